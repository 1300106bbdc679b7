//! Quoting a client's input in an error message, bounded: a message names
//! the offending value, but a 1 MB name must not come back as a 1 MB answer.

use std::fmt;

/// Characters of an input quoted before it is cut.
pub const QUOTE_CHARS: usize = 128;

/// Displays at most [`QUOTE_CHARS`] characters of the input, then `…` and
/// how many bytes were left out.
#[derive(Debug, Clone, Copy)]
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(QUOTE_CHARS) {
            None => f.write_str(self.0),
            Some((cut, _)) => write!(f, "{}… ({} more bytes)", &self.0[..cut], self.0.len() - cut),
        }
    }
}

/// `s` cut to at most `max` bytes on a character boundary, with a note of
/// what was left out: the last bound on a message, whatever built it.
pub fn bounded(s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} more bytes)", &s[..cut], s.len() - cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_is_quoted_whole_and_long_input_cut() {
        assert_eq!(Quoted("web").to_string(), "web");
        let long = "é".repeat(1000);
        let q = Quoted(&long).to_string();
        assert!(q.starts_with(&"é".repeat(QUOTE_CHARS)), "{q}");
        assert!(
            q.ends_with(&format!("… ({} more bytes)", 2 * (1000 - QUOTE_CHARS))),
            "{q}"
        );
        let b = bounded("ab".repeat(10) + "é", 3);
        assert_eq!(b, "aba… (19 more bytes)");
        assert_eq!(bounded("short".into(), 100), "short");
    }
}
