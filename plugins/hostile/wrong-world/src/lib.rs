//! A component of another world (hostile:other); the host must refuse it at
//! install time.
wit_bindgen::generate!({ path: "wit", world: "not-a-policy" });

struct Other;

impl Guest for Other {
    fn place(count: u32) -> Vec<u32> {
        (0..count).collect()
    }
}

export!(Other);
