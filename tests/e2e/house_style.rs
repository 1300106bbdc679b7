//! The house rules on size, checked over the repository's sources so they
//! stay kept: no source file over 1,000 lines (host/, sdk/, tests/,
//! plugins/), no function over 150 lines in host/ or sdk/ outside tests.
//!
//! A test rather than a CI step: it runs with README's test command, so a
//! developer sees a breach before CI does, and it needs nothing but Rust.
//! Function lengths are read from the text, which is sound because the tree
//! is rustfmt-formatted (CI checks that): a function's body closes with a
//! `}` at the indentation of its `fn`.
//!
//! The two lists below hold what is known to break a rule and is being
//! fixed; an entry that no longer breaks it fails the test too, so the lists
//! only shrink.

use std::path::{Path, PathBuf};

use crate::api::repo_root;

const MAX_FILE_LINES: usize = 1_000;
const MAX_FN_LINES: usize = 150;

/// Files over the limit, with who splits them.
const KNOWN_LONG_FILES: &[(&str, &str)] = &[];

/// Functions (`path`, name) over the limit, with who splits them.
const KNOWN_LONG_FNS: &[(&str, &str, &str)] = &[];

/// Source files under `dir` (relative to the repository), build output skipped.
fn sources(root: &Path, dir: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
        return;
    };
    for entry in entries {
        let entry = entry.expect("directory entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = format!("{dir}/{name}");
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            if name != "target" && !name.starts_with('.') {
                sources(root, &rel, out);
            }
        } else if [".rs", ".py", ".sh"].iter().any(|e| name.ends_with(e)) {
            out.push(PathBuf::from(rel));
        }
    }
}

fn read(root: &Path, rel: &Path) -> String {
    std::fs::read_to_string(root.join(rel))
        .unwrap_or_else(|e| panic!("reading {}: {e}", rel.display()))
}

#[test]
fn no_source_file_is_over_1000_lines() {
    let root = repo_root();
    let mut files = Vec::new();
    for dir in ["host", "sdk", "tests", "plugins"] {
        sources(&root, dir, &mut files);
    }
    assert!(
        files.len() > 50,
        "found only {} source files under {}",
        files.len(),
        root.display()
    );
    let mut breaches = Vec::new();
    for rel in &files {
        let lines = read(&root, rel).lines().count();
        let known = KNOWN_LONG_FILES
            .iter()
            .any(|(p, _)| Path::new(p) == rel.as_path());
        if lines > MAX_FILE_LINES && !known {
            breaches.push(format!(
                "{}: {lines} lines, over {MAX_FILE_LINES}; split it",
                rel.display()
            ));
        }
        if lines <= MAX_FILE_LINES && known {
            breaches.push(format!(
                "{}: {lines} lines, within the limit; remove it from KNOWN_LONG_FILES",
                rel.display()
            ));
        }
    }
    for (p, _) in KNOWN_LONG_FILES {
        if !root.join(p).exists() {
            breaches.push(format!("{p} is gone; remove it from KNOWN_LONG_FILES"));
        }
    }
    assert!(breaches.is_empty(), "{}", breaches.join("\n"));
}

/// A function found in a file: its name, first line (1-based) and length.
#[derive(Debug, PartialEq)]
struct FnSpan {
    name: String,
    line: usize,
    lines: usize,
}

/// The name in a line that starts an item `fn`, with its indentation.
fn fn_start(line: &str) -> Option<(&str, &str)> {
    let body = line.trim_start();
    let indent = &line[..line.len() - body.len()];
    let mut rest = body;
    for word in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
    ] {
        rest = rest.strip_prefix(word).unwrap_or(rest);
    }
    let rest = rest.strip_prefix("fn ")?;
    let end = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    (end > 0).then(|| (indent, &rest[..end]))
}

/// The functions with a body in rustfmt-formatted `src`, lines of
/// `#[cfg(test)]` modules left out.
fn functions(src: &str) -> Vec<FnSpan> {
    let lines: Vec<&str> = src.lines().collect();
    let closing = |from: usize, indent: &str| {
        (from..lines.len()).find(|&k| lines[k].strip_prefix(indent) == Some("}"))
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let next = lines.get(i + 1).map_or("", |l| l.trim_start());
        if line.trim() == "#[cfg(test)]" && next.starts_with("mod ") && next.ends_with('{') {
            let indent = &lines[i + 1][..lines[i + 1].len() - next.len()];
            i = closing(i + 2, indent).unwrap_or(lines.len()) + 1;
            continue;
        }
        if let Some((indent, name)) = fn_start(line) {
            // The signature ends on its first line or on one at its indentation.
            let sig_end = (i..lines.len()).find(|&k| {
                let l = lines[k].trim_end();
                (k == i
                    || lines[k]
                        .strip_prefix(indent)
                        .is_some_and(|r| !r.starts_with(' ')))
                    && (l.ends_with('{') || l.ends_with(';') || l.ends_with("{}"))
            });
            let end = match sig_end {
                Some(k) if lines[k].trim_end().ends_with('{') => closing(k + 1, indent),
                Some(k) if lines[k].trim_end().ends_with("{}") => Some(k),
                _ => None, // a declaration without a body
            };
            if let Some(end) = end {
                out.push(FnSpan {
                    name: name.to_owned(),
                    line: i + 1,
                    lines: end - i + 1,
                });
            }
        }
        i += 1;
    }
    out
}

#[test]
fn functions_are_measured_from_fn_to_closing_brace() {
    let src = "\
pub fn short() {}

pub(crate) fn three(
    a: u32,
) -> u32 {
    a
}

trait T {
    fn declared(&self);
    fn default(&self) {
        let _ = 1;
    }
}

#[cfg(test)]
mod tests {
    fn skipped() {
        let _ = 1;
    }
}
";
    let got: Vec<(String, usize, usize)> = functions(src)
        .into_iter()
        .map(|f| (f.name, f.line, f.lines))
        .collect();
    let want = [("short", 1, 1), ("three", 3, 5), ("default", 11, 3)];
    let want: Vec<(String, usize, usize)> =
        want.iter().map(|&(n, l, c)| (n.to_owned(), l, c)).collect();
    assert_eq!(got, want);
}

#[test]
fn no_function_outside_tests_is_over_150_lines() {
    let root = repo_root();
    let mut files = Vec::new();
    for dir in ["host", "sdk"] {
        sources(&root, dir, &mut files);
    }
    let mut breaches = Vec::new();
    let mut known_seen = Vec::new();
    for rel in &files {
        let is_test_file = rel.components().any(|c| c.as_os_str() == "tests")
            || rel.file_name().is_some_and(|n| n == "tests.rs");
        if is_test_file || rel.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        for f in functions(&read(&root, rel)) {
            if f.lines <= MAX_FN_LINES {
                continue;
            }
            let known = KNOWN_LONG_FNS
                .iter()
                .any(|(p, n, _)| Path::new(p) == rel.as_path() && *n == f.name);
            if known {
                known_seen.push((rel.clone(), f.name));
            } else {
                breaches.push(format!(
                    "{}:{}: fn {} is {} lines, over {MAX_FN_LINES}; split it into steps",
                    rel.display(),
                    f.line,
                    f.name,
                    f.lines
                ));
            }
        }
    }
    for (p, n, _) in KNOWN_LONG_FNS {
        if !known_seen
            .iter()
            .any(|(rel, name)| Path::new(p) == rel.as_path() && name == n)
        {
            breaches.push(format!(
                "{p}: fn {n} is gone or within the limit; remove it from KNOWN_LONG_FNS"
            ));
        }
    }
    assert!(breaches.is_empty(), "{}", breaches.join("\n"));
}
