//! The canonical form: `Display` prints an expression so that parsing it
//! again gives back the same tree.

use std::fmt;

use super::lex::is_delim;
use super::{Arg, Condition, Expr, Op, Pattern, Subject, Value};

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::AgentConnected => f.write_str("agentConnected"),
            Subject::AgentVersion => f.write_str("agentVersion"),
            Subject::Attribute(n) => write!(f, "attribute:{n}"),
            Subject::Ec2InstanceId => f.write_str("ec2InstanceId"),
            Subject::RegisteredAt => f.write_str("registeredAt"),
            Subject::RunningTasksCount => f.write_str("runningTasksCount"),
            Subject::TaskGroup => f.write_str("task:group"),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_arg_text(f, &self.text)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_arg_text(f, &self.source)
    }
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::None => Ok(()),
            Arg::Value(v) => v.fmt(f),
            Arg::Regex(p) => p.fmt(f),
            Arg::List(l) => {
                f.write_str("[")?;
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    v.fmt(f)?;
                }
                f.write_str("]")
            }
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.subject, self.op)?;
        match self.arg {
            Arg::None => Ok(()),
            _ => write!(f, " {}", self.arg),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Parenthesise exactly where re-parsing would otherwise build a
        // different tree: a nested `and` in an `and`, any `or` below an `or`
        // or `and`, and any `and`/`or` under `not`.
        fn join(f: &mut fmt::Formatter<'_>, v: &[Expr], sep: &str, paren_and: bool) -> fmt::Result {
            for (i, e) in v.iter().enumerate() {
                if i > 0 {
                    f.write_str(sep)?;
                }
                let paren = matches!(e, Expr::Or(_)) || (paren_and && matches!(e, Expr::And(_)));
                if paren {
                    write!(f, "({e})")?;
                } else {
                    write!(f, "{e}")?;
                }
            }
            Ok(())
        }
        match self {
            Expr::Or(v) => join(f, v, " or ", false),
            Expr::And(v) => join(f, v, " and ", true),
            Expr::Not(e) => match **e {
                Expr::Cond(_) | Expr::Not(_) => write!(f, "not {e}"),
                _ => write!(f, "not ({e})"),
            },
            Expr::Cond(c) => c.fmt(f),
        }
    }
}

/// Writes an argument bare when it lexes back as the same single token,
/// quoted otherwise. Keywords are quoted too, only for readability.
fn write_arg_text(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    let needs_quotes = s.is_empty()
        || s.starts_with(['"', '\''])
        || s.chars().any(is_delim)
        || ["and", "or", "not", "&&", "||", "!"]
            .iter()
            .any(|k| k.eq_ignore_ascii_case(s));
    if !needs_quotes {
        return f.write_str(s);
    }
    f.write_str("\"")?;
    for c in s.chars() {
        if c == '"' || c == '\\' {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}
