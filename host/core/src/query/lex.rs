//! The lexer of the query language: tokens with their byte spans.

use super::ParseError;

/// Characters that end a bare token.
pub(super) fn is_delim(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | ',')
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum TokKind {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    /// A bare token; its text is `src[start..end]`.
    Bare,
    /// A quoted string, unescaped.
    Quoted(String),
}

#[derive(Debug, Clone)]
pub(super) struct Tok {
    pub(super) kind: TokKind,
    pub(super) start: usize,
    pub(super) end: usize,
}

pub(super) fn lex(src: &str) -> Result<Vec<Tok>, ParseError> {
    let mut toks = Vec::new();
    let mut it = src.char_indices().peekable();
    while let Some(&(start, c)) = it.peek() {
        if c.is_whitespace() {
            it.next();
            continue;
        }
        let punct = match c {
            '(' => Some(TokKind::LParen),
            ')' => Some(TokKind::RParen),
            '[' => Some(TokKind::LBracket),
            ']' => Some(TokKind::RBracket),
            ',' => Some(TokKind::Comma),
            _ => None,
        };
        if let Some(kind) = punct {
            it.next();
            toks.push(Tok {
                kind,
                start,
                end: start + 1,
            });
            continue;
        }
        if c == '"' || c == '\'' {
            it.next();
            let mut text = String::new();
            let end = loop {
                match it.next() {
                    None => {
                        return Err(ParseError {
                            position: src.len(),
                            expected: format!(
                                "`{c}` to close the string opened at position {start}"
                            ),
                            found: "end of input".into(),
                        });
                    }
                    Some((i, q)) if q == c => break i + 1,
                    Some((_, '\\')) => match it.peek() {
                        // Only the quote and the backslash are escapable; other
                        // backslashes stay, so regex escapes survive unchanged.
                        Some(&(_, n)) if n == c || n == '\\' => {
                            text.push(n);
                            it.next();
                        }
                        _ => text.push('\\'),
                    },
                    Some((_, ch)) => text.push(ch),
                }
            };
            toks.push(Tok {
                kind: TokKind::Quoted(text),
                start,
                end,
            });
            continue;
        }
        let mut end = start;
        while let Some(&(i, ch)) = it.peek() {
            if is_delim(ch) {
                break;
            }
            end = i + ch.len_utf8();
            it.next();
        }
        toks.push(Tok {
            kind: TokKind::Bare,
            start,
            end,
        });
    }
    Ok(toks)
}
