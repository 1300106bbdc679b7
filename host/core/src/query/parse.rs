//! The parser: tokens to an [`Expr`], arguments typed and checked against
//! their subject as they are read.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate};
use regex::Regex;

use super::eval::{parse_num, version_component};
use super::lex::{Tok, TokKind, lex};
use super::{Arg, Condition, Expr, MAX_DEPTH, Op, ParseError, Pattern, Subject, Typed, Value};

/// Longest token text quoted back in a [`ParseError`], in characters.
const MAX_FOUND_CHARS: usize = 40;

/// Parses a query expression.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let toks = lex(src)?;
    let mut p = Parser { src, toks, i: 0 };
    let e = p.parse_or(0)?;
    if p.i < p.toks.len() {
        return Err(p.err_here("`and`, `or` or end of input"));
    }
    Ok(e)
}

impl FromStr for Expr {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

impl Op {
    /// Every spelling, canonical one first for each operator.
    const SPELLINGS: &'static [(&'static str, Op)] = &[
        ("==", Op::Eq),
        ("equals", Op::Eq),
        ("!=", Op::Ne),
        ("not_equals", Op::Ne),
        (">", Op::Gt),
        (">=", Op::Ge),
        ("<", Op::Lt),
        ("<=", Op::Le),
        ("exists", Op::Exists),
        ("!exists", Op::NotExists),
        ("not_exists", Op::NotExists),
        ("in", Op::In),
        ("not_in", Op::NotIn),
        ("!in", Op::NotIn),
        ("=~", Op::Matches),
        ("matches", Op::Matches),
        ("!~", Op::NotMatches),
        ("not_matches", Op::NotMatches),
    ];

    fn from_word(w: &str) -> Option<Op> {
        Op::SPELLINGS
            .iter()
            .find(|(s, _)| s.eq_ignore_ascii_case(w))
            .map(|&(_, op)| op)
    }
}

impl Subject {
    /// Operators that make sense for this subject; others are parse errors.
    pub(super) fn ops(&self) -> &'static [Op] {
        use Op::*;
        match self {
            Subject::AgentConnected => &[Eq, Ne],
            Subject::RunningTasksCount => &[Eq, Ne, Gt, Ge, Lt, Le, In, NotIn],
            Subject::RegisteredAt => &[Eq, Ne, Gt, Ge, Lt, Le],
            Subject::TaskGroup => &[Eq, Ne, In, NotIn, Matches, NotMatches, Exists, NotExists],
            Subject::AgentVersion | Subject::Ec2InstanceId | Subject::Attribute(_) => &[
                Eq, Ne, Gt, Ge, Lt, Le, Exists, NotExists, In, NotIn, Matches, NotMatches,
            ],
        }
    }

    fn from_word(w: &str) -> Result<Subject, &'static str> {
        const FIXED: &[(&str, Subject)] = &[
            ("agentConnected", Subject::AgentConnected),
            ("agentVersion", Subject::AgentVersion),
            ("ec2InstanceId", Subject::Ec2InstanceId),
            ("registeredAt", Subject::RegisteredAt),
            ("runningTasksCount", Subject::RunningTasksCount),
            ("task:group", Subject::TaskGroup),
        ];
        if let Some((_, s)) = FIXED.iter().find(|(n, _)| n.eq_ignore_ascii_case(w)) {
            return Ok(s.clone());
        }
        const PREFIX: &str = "attribute:";
        // `get` rather than slicing: `w` may have a multi-byte char at the cut.
        match (w.get(..PREFIX.len()), w.get(PREFIX.len()..)) {
            (Some(p), Some(name)) if p.eq_ignore_ascii_case(PREFIX) => {
                if name.is_empty() {
                    Err("an attribute name after `attribute:`")
                } else {
                    Ok(Subject::Attribute(name.to_owned()))
                }
            }
            _ => Err(
                "a subject (agentConnected, agentVersion, attribute:<name>, ec2InstanceId, \
                 registeredAt, runningTasksCount or task:group)",
            ),
        }
    }
}

/// Parses `1.20.3` into components (at parse time only).
fn parse_version(s: &str) -> Option<Box<[u64]>> {
    s.split('.').map(version_component).collect()
}

/// A `YYYY-MM-DD` date (midnight UTC) or an RFC 3339 datetime, in epoch seconds.
fn parse_instant(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let date_shape = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    if date_shape {
        let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp() as f64);
    }
    let dt = DateTime::parse_from_rfc3339(s).ok()?;
    Some(dt.timestamp() as f64 + f64::from(dt.timestamp_subsec_nanos()) / 1e9)
}

/// Builds a value for `subject`, or says what was expected instead.
pub(super) fn make_value(subject: &Subject, text: String) -> Result<Value, &'static str> {
    let typed = match subject {
        Subject::AgentConnected => {
            if text.eq_ignore_ascii_case("true") {
                Typed::Bool(true)
            } else if text.eq_ignore_ascii_case("false") {
                Typed::Bool(false)
            } else {
                return Err("`true` or `false`");
            }
        }
        Subject::RunningTasksCount => Typed::Int(text.parse().map_err(|_| "an integer")?),
        Subject::RegisteredAt => Typed::Instant(
            parse_instant(&text).ok_or("a date (YYYY-MM-DD) or an RFC 3339 datetime")?,
        ),
        Subject::AgentVersion
        | Subject::Ec2InstanceId
        | Subject::Attribute(_)
        | Subject::TaskGroup => Typed::Text {
            num: parse_num(&text),
            version: parse_version(&text),
        },
    };
    Ok(Value { text, typed })
}

/// Compiles a full-match pattern, or says what was wrong with it.
pub(super) fn make_pattern(source: String) -> Result<Pattern, String> {
    // Check the pattern on its own first: wrapping alone would accept
    // unbalanced input like `a)|(b` and silently change its meaning.
    let short = |e: regex::Error| {
        let msg = e.to_string();
        let last = msg
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_owned();
        format!("a valid regular expression ({last})")
    };
    Regex::new(&source).map_err(short)?;
    let re = Regex::new(&format!(r"\A(?:{source})\z")).map_err(short)?;
    Ok(Pattern { source, re })
}

struct Parser<'s> {
    src: &'s str,
    toks: Vec<Tok>,
    i: usize,
}

impl<'s> Parser<'s> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i)
    }

    /// Text of the current token when it is bare.
    fn bare(&self) -> Option<&'s str> {
        let src = self.src;
        self.peek()
            .filter(|t| t.kind == TokKind::Bare)
            .and_then(|t| src.get(t.start..t.end))
    }

    fn at_keyword(&self, words: &[&str]) -> bool {
        self.bare()
            .is_some_and(|w| words.iter().any(|k| k.eq_ignore_ascii_case(w)))
    }

    fn err_at(&self, tok: Option<&Tok>, expected: impl Into<String>) -> ParseError {
        let expected = expected.into();
        match tok {
            None => ParseError {
                position: self.src.len(),
                expected,
                found: "end of input".into(),
            },
            Some(t) => {
                let text = self.src.get(t.start..t.end).unwrap_or("");
                let mut found: String = text.chars().take(MAX_FOUND_CHARS).collect();
                if found.len() < text.len() {
                    found.push('…');
                }
                ParseError {
                    position: t.start,
                    expected,
                    found: format!("`{found}`"),
                }
            }
        }
    }

    fn err_here(&self, expected: impl Into<String>) -> ParseError {
        self.err_at(self.peek(), expected)
    }

    fn parse_or(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let mut v = vec![self.parse_and(depth)?];
        while self.at_keyword(&["or", "||"]) {
            self.i += 1;
            v.push(self.parse_and(depth)?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Expr::Or(v)
        })
    }

    fn parse_and(&mut self, depth: usize) -> Result<Expr, ParseError> {
        let mut v = vec![self.parse_unary(depth)?];
        while self.at_keyword(&["and", "&&"]) {
            self.i += 1;
            v.push(self.parse_unary(depth)?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Expr::And(v)
        })
    }

    fn parse_unary(&mut self, depth: usize) -> Result<Expr, ParseError> {
        // Negations are counted in a loop rather than by recursion.
        let mut nots = 0usize;
        loop {
            if depth + nots > MAX_DEPTH {
                return Err(self.err_here(format!("at most {MAX_DEPTH} levels of nesting")));
            }
            if self.at_keyword(&["not", "!"]) {
                self.i += 1;
                nots += 1;
            } else if self
                .bare()
                .is_some_and(|w| w.len() > 1 && w.starts_with('!'))
            {
                // `!attribute:x exists`: peel the `!` off the subject token.
                if let Some(t) = self.toks.get_mut(self.i) {
                    t.start += 1;
                }
                nots += 1;
            } else {
                break;
            }
        }
        let mut e = self.parse_primary(depth + nots)?;
        for _ in 0..nots {
            e = Expr::Not(Box::new(e));
        }
        Ok(e)
    }

    fn parse_primary(&mut self, depth: usize) -> Result<Expr, ParseError> {
        if self.peek().is_some_and(|t| t.kind == TokKind::LParen) {
            if depth + 1 > MAX_DEPTH {
                return Err(self.err_here(format!("at most {MAX_DEPTH} levels of nesting")));
            }
            self.i += 1;
            let e = self.parse_or(depth + 1)?;
            if !self.peek().is_some_and(|t| t.kind == TokKind::RParen) {
                return Err(self.err_here("`)`"));
            }
            self.i += 1;
            return Ok(e);
        }
        self.parse_condition().map(Expr::Cond)
    }

    fn parse_condition(&mut self) -> Result<Condition, ParseError> {
        let Some(word) = self.bare() else {
            return Err(self.err_here(match self.peek() {
                Some(Tok {
                    kind: TokKind::Quoted(_),
                    ..
                }) => "a subject",
                _ => "a condition or `(`",
            }));
        };
        let subject = Subject::from_word(word).map_err(|exp| self.err_here(exp))?;
        self.i += 1;

        let Some(op) = self.bare().and_then(Op::from_word) else {
            return Err(self.err_here("an operator"));
        };
        if !subject.ops().contains(&op) {
            let list: Vec<&str> = subject.ops().iter().map(|o| o.as_str()).collect();
            let name = match &subject {
                Subject::Attribute(_) => "attribute".to_owned(),
                s => s.to_string(),
            };
            return Err(self.err_here(format!(
                "an operator supported by {name} ({})",
                list.join(", ")
            )));
        }
        self.i += 1;

        let arg = match op {
            Op::Exists | Op::NotExists => Arg::None,
            Op::In | Op::NotIn => Arg::List(self.parse_list(&subject)?),
            Op::Matches | Op::NotMatches => {
                let text = self.arg_text()?;
                Arg::Regex(
                    make_pattern(text)
                        .map_err(|exp| self.err_at(self.toks.get(self.i - 1), exp))?,
                )
            }
            _ => Arg::Value(self.parse_value(&subject)?),
        };
        Ok(Condition { subject, op, arg })
    }

    /// Consumes one argument token and returns its text.
    fn arg_text(&mut self) -> Result<String, ParseError> {
        let text = match self.peek() {
            Some(Tok {
                kind: TokKind::Quoted(s),
                ..
            }) => s.clone(),
            Some(Tok {
                kind: TokKind::Bare,
                start,
                end,
            }) => self.src.get(*start..*end).unwrap_or("").to_owned(),
            _ => return Err(self.err_here("an argument")),
        };
        self.i += 1;
        Ok(text)
    }

    fn parse_value(&mut self, subject: &Subject) -> Result<Value, ParseError> {
        let text = self.arg_text()?;
        make_value(subject, text).map_err(|exp| self.err_at(self.toks.get(self.i - 1), exp))
    }

    fn parse_list(&mut self, subject: &Subject) -> Result<Vec<Value>, ParseError> {
        if !self.peek().is_some_and(|t| t.kind == TokKind::LBracket) {
            return Err(self.err_here("`[`"));
        }
        self.i += 1;
        let mut out = Vec::new();
        if self.peek().is_some_and(|t| t.kind == TokKind::RBracket) {
            self.i += 1;
            return Ok(out);
        }
        loop {
            out.push(self.parse_value(subject)?);
            match self.peek().map(|t| &t.kind) {
                Some(TokKind::Comma) => self.i += 1,
                Some(TokKind::RBracket) => {
                    self.i += 1;
                    return Ok(out);
                }
                _ => return Err(self.err_here("`,` or `]`")),
            }
        }
    }
}
