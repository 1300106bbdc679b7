//! The ECS cluster query language: parsing, canonical printing and evaluation.
//!
//! An expression is `subject operator [argument]`, combined with `and`/`&&`,
//! `or`/`||`, negated with `not`/`!` and grouped with parentheses. Precedence is
//! `not` > `and` > `or`. For example:
//!
//! ```text
//! attribute:ecs.availability-zone in [us-east-1a, us-east-1b]
//! runningTasksCount < 10 and attribute:gpu exists
//! not (agentConnected == false) || registeredAt >= 2018-01-01T00:00:00Z
//! ```
//!
//! Tokens are separated by whitespace, parentheses, brackets and commas; an
//! argument is either a bare token or a single/double-quoted string in which a
//! backslash escapes the quote character or another backslash (any other
//! backslash is kept as is, so regexes like `"t2\.micro"` need no doubling).
//!
//! Arguments are validated against the subject when the expression is parsed
//! (integers, dates, booleans, regexes), and regexes are compiled and dates
//! converted then, so [`Expr::eval`] neither parses nor allocates.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate};
use regex::Regex;

/// Maximum nesting of parentheses and negations. Bounds the recursion of
/// parsing, evaluation, printing and dropping, so hostile input cannot
/// overflow the stack.
const MAX_DEPTH: usize = 64;

/// Longest token text quoted back in a [`ParseError`], in characters.
const MAX_FOUND_CHARS: usize = 40;

/// What a query is evaluated against: one container instance.
pub trait QueryTarget {
    /// Whether the instance's agent is connected.
    fn agent_connected(&self) -> bool;
    /// The agent's version, when known.
    fn agent_version(&self) -> Option<&str>;
    /// None: no such attribute; Some(None): attribute present without a value; Some(Some(v)): with value v.
    fn attribute(&self, name: &str) -> Option<Option<&str>>;
    /// The EC2 instance id.
    fn ec2_instance_id(&self) -> &str;
    /// Registration time, in seconds since the Unix epoch.
    fn registered_at(&self) -> f64;
    /// Number of tasks running on the instance.
    fn running_tasks_count(&self) -> u32;
    /// True when some task on the instance (by desired status RUNNING) has a group for which `f` returns true.
    fn any_task_group(&self, f: &mut dyn FnMut(&str) -> bool) -> bool;
}

/// A parsed query expression.
///
/// `And` and `Or` are n-ary so that long flat chains do not build deep trees;
/// [`parse`] always gives them at least two operands, and flattens
/// `a and b and c` into one node (but keeps `(a and b) and c` nested, so that
/// printing and re-parsing gives back the same tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// True when any operand is true.
    Or(Vec<Expr>),
    /// True when every operand is true.
    And(Vec<Expr>),
    /// Negation.
    Not(Box<Expr>),
    /// A single `subject operator [argument]` condition.
    Cond(Condition),
}

/// One `subject operator [argument]` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// What is tested.
    pub subject: Subject,
    /// How it is tested.
    pub op: Op,
    /// What it is tested against; its shape follows `op`.
    pub arg: Arg,
}

/// The property of an instance that a condition tests.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// `agentConnected`: a boolean.
    AgentConnected,
    /// `agentVersion`: a string, ordered as a dotted version when possible.
    AgentVersion,
    /// `attribute:<name>`: an optional string, ordered numerically when possible.
    Attribute(String),
    /// `ec2InstanceId`: a string.
    Ec2InstanceId,
    /// `registeredAt`: an instant.
    RegisteredAt,
    /// `runningTasksCount`: an integer.
    RunningTasksCount,
    /// `task:group`: the set of groups of the instance's running tasks.
    TaskGroup,
}

/// A comparison operator. Every spelling of an operator maps to one variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `==`, `equals`
    Eq,
    /// `!=`, `not_equals`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `exists`
    Exists,
    /// `!exists`, `not_exists`
    NotExists,
    /// `in`
    In,
    /// `not_in`, `!in`
    NotIn,
    /// `=~`, `matches`
    Matches,
    /// `!~`, `not_matches`
    NotMatches,
}

/// The argument of a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// For `exists` and `!exists`.
    None,
    /// For equality and ordering operators.
    Value(Value),
    /// For `in` and `not_in`.
    List(Vec<Value>),
    /// For `=~` and `!~`.
    Regex(Pattern),
}

/// An argument value: its text as written (quotes removed) plus the typed
/// form derived from it at parse time. Compared by text.
#[derive(Debug, Clone)]
pub struct Value {
    text: String,
    typed: Typed,
}

/// Typed form of a [`Value`], fixed by the subject it was parsed for.
#[derive(Debug, Clone)]
enum Typed {
    Bool(bool),
    Int(i64),
    /// Epoch seconds.
    Instant(f64),
    /// Precomputed numeric and dotted-version readings for ordering.
    Text {
        num: Option<f64>,
        version: Option<Box<[u64]>>,
    },
}

/// A regular expression argument, compiled at parse time and anchored so
/// that it must match the whole value (as Java's `String.matches` does).
/// Compared by pattern text.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    re: Regex,
}

/// Why a query failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at position {position}: expected {expected}, found {found}")]
pub struct ParseError {
    /// Byte offset into the source of the offending token (its length at end of input).
    pub position: usize,
    /// What would have been accepted there, e.g. "an operator".
    pub expected: String,
    /// The offending token in backticks (shortened when long), or "end of input".
    pub found: String,
}

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

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

impl Expr {
    /// Evaluates the expression against one instance. Does no parsing and no allocation.
    pub fn eval<T: QueryTarget + ?Sized>(&self, t: &T) -> bool {
        match self {
            Expr::Or(v) => v.iter().any(|e| e.eval(t)),
            Expr::And(v) => v.iter().all(|e| e.eval(t)),
            Expr::Not(e) => !e.eval(t),
            Expr::Cond(c) => c.eval(t),
        }
    }

    /// True when the expression mentions neither `runningTasksCount` nor
    /// `task:group`, the subjects that change as tasks are placed, so a caller
    /// may cache its result per instance within a placement round.
    pub fn is_static(&self) -> bool {
        match self {
            Expr::Or(v) | Expr::And(v) => v.iter().all(Expr::is_static),
            Expr::Not(e) => e.is_static(),
            Expr::Cond(c) => !matches!(c.subject, Subject::RunningTasksCount | Subject::TaskGroup),
        }
    }
}

impl Condition {
    /// Evaluates this condition against one instance.
    pub fn eval<T: QueryTarget + ?Sized>(&self, t: &T) -> bool {
        // Negated operators are exactly the negation of their positive form,
        // so e.g. a missing attribute satisfies `!=`.
        let (base, negated) = self.op.split();
        let vals = self.arg.values();
        let positive = match &self.subject {
            Subject::AgentConnected => {
                let v = t.agent_connected();
                match base {
                    Op::Exists => true,
                    Op::Eq | Op::In => vals
                        .iter()
                        .any(|x| matches!(x.typed, Typed::Bool(b) if b == v)),
                    _ => false,
                }
            }
            Subject::RunningTasksCount => {
                let n = i64::from(t.running_tasks_count());
                match base {
                    Op::Exists => true,
                    Op::Eq | Op::In => vals
                        .iter()
                        .any(|x| matches!(x.typed, Typed::Int(i) if i == n)),
                    _ => match self.arg.single() {
                        Some(Value {
                            typed: Typed::Int(i),
                            ..
                        }) => ord_accepts(base, Some(n.cmp(i))),
                        _ => false,
                    },
                }
            }
            Subject::RegisteredAt => {
                let r = t.registered_at();
                match base {
                    Op::Exists => true,
                    Op::Eq | Op::In => vals
                        .iter()
                        .any(|x| matches!(x.typed, Typed::Instant(i) if i == r)),
                    _ => match self.arg.single() {
                        Some(Value {
                            typed: Typed::Instant(i),
                            ..
                        }) => ord_accepts(base, r.partial_cmp(i)),
                        _ => false,
                    },
                }
            }
            Subject::AgentVersion => {
                let v = t.agent_version();
                eval_text(base, &self.arg, v.is_some(), v, TextOrder::Version)
            }
            Subject::Ec2InstanceId => {
                let v = t.ec2_instance_id();
                eval_text(base, &self.arg, true, Some(v), TextOrder::Lexical)
            }
            Subject::Attribute(name) => {
                let a = t.attribute(name);
                eval_text(
                    base,
                    &self.arg,
                    a.is_some(),
                    a.flatten(),
                    TextOrder::Numeric,
                )
            }
            Subject::TaskGroup => match base {
                Op::Exists => t.any_task_group(&mut |_| true),
                Op::Eq | Op::In => t.any_task_group(&mut |g| vals.iter().any(|x| x.text == g)),
                Op::Matches => match &self.arg {
                    Arg::Regex(p) => t.any_task_group(&mut |g| p.re.is_match(g)),
                    _ => false,
                },
                // Rejected at parse time: there is no single value to order.
                _ => false,
            },
        };
        positive != negated
    }
}

impl Value {
    /// The value's text as written, without quotes or escapes.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}
impl Eq for Value {}

impl Pattern {
    /// The pattern as written (without the anchoring added for full matching).
    pub fn as_str(&self) -> &str {
        &self.source
    }
    /// Whether the pattern matches the whole of `s`.
    pub fn is_full_match(&self, s: &str) -> bool {
        self.re.is_match(s)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}
impl Eq for Pattern {}

impl Arg {
    /// The values an equality or membership test compares against.
    fn values(&self) -> &[Value] {
        match self {
            Arg::Value(v) => std::slice::from_ref(v),
            Arg::List(l) => l,
            Arg::None | Arg::Regex(_) => &[],
        }
    }
    fn single(&self) -> Option<&Value> {
        match self {
            Arg::Value(v) => Some(v),
            _ => None,
        }
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

    /// The canonical spelling, as printed by `Display`.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Exists => "exists",
            Op::NotExists => "!exists",
            Op::In => "in",
            Op::NotIn => "not_in",
            Op::Matches => "=~",
            Op::NotMatches => "!~",
        }
    }

    fn from_word(w: &str) -> Option<Op> {
        Op::SPELLINGS
            .iter()
            .find(|(s, _)| s.eq_ignore_ascii_case(w))
            .map(|&(_, op)| op)
    }

    /// The positive operator and whether this one negates it.
    fn split(self) -> (Op, bool) {
        match self {
            Op::Ne => (Op::Eq, true),
            Op::NotExists => (Op::Exists, true),
            Op::NotIn => (Op::In, true),
            Op::NotMatches => (Op::Matches, true),
            op => (op, false),
        }
    }
}

impl Subject {
    /// Operators that make sense for this subject; others are parse errors.
    fn ops(&self) -> &'static [Op] {
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

// ---------------------------------------------------------------------------
// Display (canonical form)
// ---------------------------------------------------------------------------

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

/// Characters that end a bare token.
fn is_delim(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | ',')
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

// ---------------------------------------------------------------------------
// Evaluation helpers
// ---------------------------------------------------------------------------

/// How a string subject is ordered by `<`, `>` and friends.
#[derive(Clone, Copy)]
enum TextOrder {
    Lexical,
    /// Numerically when both sides are numbers (attributes).
    Numeric,
    /// Component-wise when both sides are dotted versions (agentVersion).
    Version,
}

fn eval_text(base: Op, arg: &Arg, present: bool, value: Option<&str>, order: TextOrder) -> bool {
    match base {
        Op::Exists => present,
        Op::Eq | Op::In => value.is_some_and(|v| arg.values().iter().any(|x| x.text == v)),
        Op::Matches => match (arg, value) {
            (Arg::Regex(p), Some(v)) => p.re.is_match(v),
            _ => false,
        },
        _ => match (arg.single(), value) {
            (Some(x), Some(v)) => ord_accepts(base, text_cmp(v, x, order)),
            _ => false,
        },
    }
}

fn ord_accepts(op: Op, o: Option<Ordering>) -> bool {
    match (op, o) {
        (_, None) => false,
        (Op::Gt, Some(o)) => o == Ordering::Greater,
        (Op::Ge, Some(o)) => o != Ordering::Less,
        (Op::Lt, Some(o)) => o == Ordering::Less,
        (Op::Le, Some(o)) => o != Ordering::Greater,
        (Op::Eq, Some(o)) => o == Ordering::Equal,
        _ => false,
    }
}

/// Orders the target's value `v` against the argument `x`.
fn text_cmp(v: &str, x: &Value, order: TextOrder) -> Option<Ordering> {
    if let Typed::Text { num, version } = &x.typed {
        match order {
            TextOrder::Numeric => {
                if let (Some(n), Some(m)) = (*num, parse_num(v)) {
                    return m.partial_cmp(&n);
                }
            }
            TextOrder::Version => {
                if let Some(ver) = version
                    && let Some(o) = version_cmp(v, ver)
                {
                    return Some(o);
                }
            }
            TextOrder::Lexical => {}
        }
    }
    Some(v.cmp(x.text.as_str()))
}

/// A finite number, or None (so "nan" and "inf" order as text).
fn parse_num(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|n| n.is_finite())
}

fn version_component(c: &str) -> Option<u64> {
    if c.is_empty() || !c.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    c.parse().ok()
}

/// Parses `1.20.3` into components (at parse time only).
fn parse_version(s: &str) -> Option<Box<[u64]>> {
    s.split('.').map(version_component).collect()
}

/// Compares dotted version `v` with parsed `ver` without allocating; missing
/// components count as 0, so `1.2` == `1.2.0`. None when `v` is not a version.
fn version_cmp(v: &str, ver: &[u64]) -> Option<Ordering> {
    // Validate first: a non-version target is ordered as text instead.
    if v.split('.').any(|c| version_component(c).is_none()) {
        return None;
    }
    let mut left = v.split('.').map(version_component);
    let mut right = ver.iter().copied();
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Some(Ordering::Equal),
            (a, b) => {
                let a = a.flatten().unwrap_or(0);
                let b = b.unwrap_or(0);
                if a != b {
                    return Some(a.cmp(&b));
                }
            }
        }
    }
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

// ---------------------------------------------------------------------------
// Argument construction (shared by the parser and the tests)
// ---------------------------------------------------------------------------

/// Builds a value for `subject`, or says what was expected instead.
fn make_value(subject: &Subject, text: String) -> Result<Value, &'static str> {
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
fn make_pattern(source: String) -> Result<Pattern, String> {
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

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum TokKind {
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
struct Tok {
    kind: TokKind,
    start: usize,
    end: usize,
}

fn lex(src: &str) -> Result<Vec<Tok>, ParseError> {
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

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A plain in-memory instance.
    #[derive(Debug, Clone)]
    struct Inst {
        connected: bool,
        version: Option<&'static str>,
        attrs: Vec<(&'static str, Option<&'static str>)>,
        id: &'static str,
        registered: f64,
        running: u32,
        groups: Vec<&'static str>,
    }

    impl QueryTarget for Inst {
        fn agent_connected(&self) -> bool {
            self.connected
        }
        fn agent_version(&self) -> Option<&str> {
            self.version
        }
        fn attribute(&self, name: &str) -> Option<Option<&str>> {
            self.attrs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        }
        fn ec2_instance_id(&self) -> &str {
            self.id
        }
        fn registered_at(&self) -> f64 {
            self.registered
        }
        fn running_tasks_count(&self) -> u32 {
            self.running
        }
        fn any_task_group(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
            self.groups.iter().any(|g| f(g))
        }
    }

    /// "A": connected, agent 1.20.3, us-east-1a t2.micro with a gpu, stack=prod,
    /// cpu=16, registered 2018-06-01T00:00:00Z, 3 tasks in service:web and family:batch.
    fn inst_a() -> Inst {
        Inst {
            connected: true,
            version: Some("1.20.3"),
            attrs: vec![
                ("ecs.availability-zone", Some("us-east-1a")),
                ("ecs.instance-type", Some("t2.micro")),
                ("gpu", None),
                ("stack", Some("prod")),
                ("cpu", Some("16")),
                ("name", Some("web server")),
            ],
            id: "i-abc123",
            registered: 1_527_811_200.0,
            running: 3,
            groups: vec!["service:web", "family:batch"],
        }
    }

    /// "B": disconnected, no agent version, us-east-1c m5.large, cpu=4, no gpu or
    /// stack, registered 2017-12-31T23:59:59Z, no tasks.
    fn inst_b() -> Inst {
        Inst {
            connected: false,
            version: None,
            attrs: vec![
                ("ecs.availability-zone", Some("us-east-1c")),
                ("ecs.instance-type", Some("m5.large")),
                ("cpu", Some("4")),
            ],
            id: "i-def456",
            registered: 1_514_764_799.0,
            running: 0,
            groups: vec![],
        }
    }

    #[test]
    fn eval_examples() {
        let (a, b) = (inst_a(), inst_b());
        #[rustfmt::skip]
        let table: &[(&str, &str, bool)] = &[
            // agentConnected
            ("agentConnected == true", "A", true),
            ("agentConnected == true", "B", false),
            ("agentConnected equals TRUE", "A", true),
            ("agentConnected != true", "A", false),
            ("agentConnected != true", "B", true),
            ("agentConnected not_equals False", "A", true),
            ("AgentConnected == true", "A", true),
            // agentVersion
            ("agentVersion == 1.20.3", "A", true),
            ("agentVersion == 1.20.3", "B", false),
            ("agentVersion != 1.20.3", "B", true),
            ("agentVersion > 1.9.0", "A", true), // numeric, not lexicographic
            ("agentVersion >= 1.20", "A", true),
            ("agentVersion < 1.20.10", "A", true),
            ("agentVersion <= 1.20.3", "A", true),
            ("agentVersion > 1.20.3", "A", false),
            ("agentVersion > 0", "B", false),
            ("agentVersion > abc", "A", false), // lexicographic fallback
            ("agentVersion exists", "A", true),
            ("agentVersion exists", "B", false),
            ("agentVersion =~ 1\\.20\\..*", "A", true),
            ("agentVersion in [1.19.0, 1.20.3]", "A", true),
            // attribute
            ("attribute:ecs.availability-zone in [us-east-1a, us-east-1b]", "A", true),
            ("attribute:ecs.availability-zone in [us-east-1a, us-east-1b]", "B", false),
            ("attribute:ecs.availability-zone not_in [us-east-1a, us-east-1b]", "A", false),
            ("attribute:ecs.availability-zone not_in [us-east-1a, us-east-1b]", "B", true),
            ("attribute:ecs.availability-zone !in [us-east-1c]", "B", false),
            ("attribute:ecs.availability-zone in []", "A", false),
            ("attribute:ecs.availability-zone == us-east-1a", "A", true),
            ("attribute:ecs.availability-zone equals 'us-east-1a'", "A", true),
            ("attribute:ecs.instance-type =~ t2.*", "A", true),
            ("attribute:ecs.instance-type =~ t2.*", "B", false),
            ("attribute:ecs.instance-type matches t2", "A", false), // full match only
            ("attribute:ecs.instance-type =~ micro", "A", false),
            ("attribute:ecs.instance-type =~ .*micro", "A", true),
            ("attribute:ecs.instance-type =~ 'a|t2.micro'", "A", true), // alternation stays anchored
            ("attribute:ecs.instance-type =~ \"[a-z]\\d\\.micro\"", "A", true),
            ("attribute:ecs.instance-type !~ t2.*", "A", false),
            ("attribute:ecs.instance-type !~ t2.*", "B", true),
            ("attribute:ecs.instance-type not_matches \"m5\\..*\"", "B", false),
            ("attribute:gpu exists", "A", true),
            ("attribute:gpu exists", "B", false),
            ("attribute:gpu !exists", "A", false),
            ("attribute:gpu !exists", "B", true),
            ("attribute:gpu not_exists", "B", true),
            ("attribute:gpu == true", "A", false), // present without a value
            ("attribute:gpu != x", "A", true),
            ("attribute:stack != prod", "A", false),
            ("attribute:stack != prod", "B", true), // missing satisfies !=
            ("attribute:stack not_equals prod", "B", true),
            ("attribute:stack == prod", "B", false),
            ("attribute:cpu > 8", "A", true), // numeric, not lexicographic
            ("attribute:cpu > 8", "B", false),
            ("attribute:cpu >= 16", "A", true),
            ("attribute:cpu < 8", "B", true),
            ("attribute:cpu <= 4", "B", true),
            ("attribute:stack > pre", "A", true), // lexicographic
            ("attribute:stack < a", "B", false),  // missing
            ("attribute:name == \"web server\"", "A", true),
            ("attribute:name in ['web server', \"x\"]", "A", true),
            // ec2InstanceId
            ("ec2InstanceId == i-abc123", "A", true),
            ("ec2InstanceId != i-abc123", "B", true),
            ("ec2InstanceId in [i-def456, i-xyz]", "B", true),
            ("ec2InstanceId =~ i-abc.*", "A", true),
            ("ec2InstanceId !~ i-abc.*", "B", true),
            ("ec2InstanceId < i-b", "A", true),
            ("ec2InstanceId exists", "A", true),
            // registeredAt
            ("registeredAt >= 2018-01-01", "A", true),
            ("registeredAt >= 2018-01-01", "B", false),
            ("registeredAt < 2018-01-01T00:00:00Z", "B", true),
            ("registeredAt == 2018-06-01", "A", true), // a date is midnight UTC
            ("registeredAt == 2018-06-01T02:00:00+02:00", "A", true),
            ("registeredAt != 2018-06-01", "B", true),
            ("registeredAt > 2017-12-31T23:59:58.5Z", "B", true),
            ("registeredAt <= 2017-12-31", "B", false),
            // runningTasksCount
            ("runningTasksCount < 10", "A", true),
            ("runningTasksCount == 0", "B", true),
            ("runningTasksCount != 0", "A", true),
            ("runningTasksCount > 2", "A", true),
            ("runningTasksCount >= 4", "A", false),
            ("runningTasksCount <= 0", "B", true),
            ("runningTasksCount in [1, 2, 3]", "A", true),
            ("runningTasksCount not_in [0]", "B", false),
            // task:group
            ("task:group == service:web", "A", true),
            ("task:group == service:web", "B", false),
            ("task:group != service:web", "A", false),
            ("task:group != service:web", "B", true),
            ("task:group == service", "A", false),
            ("task:group in [service:api, family:batch]", "A", true),
            ("task:group not_in [service:api]", "A", true),
            ("task:group =~ service:.*", "A", true),
            ("task:group matches web", "A", false),
            ("task:group !~ service:.*", "B", true),
            ("task:group exists", "A", true),
            ("task:group exists", "B", false),
            ("task:group !exists", "B", true),
            // boolean structure
            ("runningTasksCount < 10 and attribute:gpu exists", "A", true),
            ("runningTasksCount < 10 and attribute:gpu exists", "B", false),
            ("not (agentConnected == false) || registeredAt >= 2018-01-01T00:00:00Z", "A", true),
            ("not (agentConnected == false) || registeredAt >= 2018-01-01T00:00:00Z", "B", false),
            ("ec2InstanceId != i-abc && !(attribute:zone in [a,b])", "A", true),
            // and binds tighter than or: true or (false and false)
            ("attribute:gpu exists or runningTasksCount == 0 and agentConnected == false", "A", true),
            ("(attribute:gpu exists or runningTasksCount == 0) and agentConnected == false", "A", false),
            // not binds tighter than and: (not true) and false
            ("not attribute:gpu exists and runningTasksCount == 0", "A", false),
            ("not attribute:gpu exists and runningTasksCount == 0", "B", true),
            ("not (attribute:gpu exists and runningTasksCount == 0)", "A", true),
            ("NOT attribute:gpu exists OR task:group exists", "A", true),
            ("!attribute:gpu exists", "B", true),
            ("! attribute:gpu exists", "B", true),
            ("!!attribute:gpu exists", "A", true),
            ("not not attribute:gpu exists", "A", true),
            ("attribute:gpu EXISTS", "A", true),
            ("((attribute:gpu exists))", "A", true),
            ("agentConnected == false or agentConnected == true and runningTasksCount == 0 or task:group exists", "A", true),
        ];
        for (src, which, want) in table {
            let t = if *which == "A" { &a } else { &b };
            let e = parse(src).unwrap_or_else(|err| panic!("{src:?} failed to parse: {err}"));
            assert_eq!(e.eval(t), *want, "{src:?} on {which}");
            // The canonical form means the same thing.
            let again: Expr = e
                .to_string()
                .parse()
                .unwrap_or_else(|err| panic!("{e} failed to re-parse: {err}"));
            assert_eq!(again, e, "{src:?} -> {e}");
            assert_eq!(again.eval(t), *want, "{e} on {which}");
        }
    }

    #[test]
    fn eval_through_dyn_target() {
        let a = inst_a();
        let t: &dyn QueryTarget = &a;
        assert!(
            parse("attribute:gpu exists")
                .map(|e| e.eval(t))
                .unwrap_or(false)
        );
    }

    #[test]
    fn parse_errors() {
        #[rustfmt::skip]
        let table: &[(&str, usize, &str, &str)] = &[
            ("attribute:x ==", 14, "an argument", "end of input"),
            ("attribute:x == ", 15, "an argument", "end of input"),
            ("foo == 1", 0, "a subject", "`foo`"),
            ("!foo exists", 1, "a subject", "`foo`"),
            ("'agentConnected' == true", 0, "a subject", "`'agentConnected'`"),
            ("runningTasksCount < abc", 20, "an integer", "`abc`"),
            ("runningTasksCount in [1, x]", 25, "an integer", "`x`"),
            ("attribute:a in [x, y", 20, "`]`", "end of input"),
            ("attribute:a in [x,]", 18, "an argument", "`]`"),
            ("attribute:a in x", 15, "`[`", "`x`"),
            ("(attribute:a exists", 19, "`)`", "end of input"),
            ("attribute:a =~ \"a(\"", 15, "a valid regular expression", "`\"a(\"`"),
            ("attribute:a =~ 'a)|(b'", 15, "a valid regular expression", "`'a)|(b'`"),
            ("attribute:a =~ (", 15, "an argument", "`(`"),
            ("agentConnected == yes", 18, "`true` or `false`", "`yes`"),
            ("registeredAt > 2018-13-01", 15, "a date", "`2018-13-01`"),
            ("registeredAt > yesterday", 15, "a date", "`yesterday`"),
            ("registeredAt > 2018-01-01T00:00:00", 15, "RFC 3339", "`2018-01-01T00:00:00`"),
            ("attribute:a", 11, "an operator", "end of input"),
            ("attribute:a foo", 12, "an operator", "`foo`"),
            ("agentConnected > true", 15, "an operator supported by agentConnected", "`>`"),
            ("task:group > a", 11, "an operator supported by task:group", "`>`"),
            ("registeredAt =~ 2018.*", 13, "an operator supported by registeredAt", "`=~`"),
            ("attribute:a exists attribute:b exists", 19, "`and`, `or` or end of input", "`attribute:b`"),
            ("attribute:a exists)", 18, "`and`, `or` or end of input", "`)`"),
            ("", 0, "a condition", "end of input"),
            ("   ", 3, "a condition", "end of input"),
            ("attribute: exists", 0, "an attribute name", "`attribute:`"),
            ("attribute:a == 'abc", 19, "`'` to close the string opened at position 15", "end of input"),
            ("attribute:a exists and", 22, "a condition", "end of input"),
            ("attribute:a exists or )", 22, "a condition", "`)`"),
            ("()", 1, "a condition", "`)`"),
            ("not", 3, "a condition", "end of input"),
        ];
        for (src, pos, expected, found) in table {
            match parse(src) {
                Ok(e) => panic!("{src:?} parsed as {e}"),
                Err(err) => {
                    assert_eq!(err.position, *pos, "{src:?}: {err}");
                    assert!(err.expected.contains(expected), "{src:?}: {err}");
                    assert_eq!(err.found, *found, "{src:?}: {err}");
                }
            }
        }
    }

    #[test]
    fn error_display() {
        let err = parse("attribute:a foo").err();
        assert_eq!(
            err.map(|e| e.to_string()),
            Some("at position 12: expected an operator, found `foo`".to_owned())
        );
        let err = parse("attribute:a == ").err();
        assert_eq!(
            err.map(|e| e.to_string()),
            Some("at position 15: expected an argument, found end of input".to_owned())
        );
    }

    #[test]
    fn long_tokens_are_shortened_in_errors() {
        let src = format!("{} == 1", "x".repeat(1000));
        let err = parse(&src).err().map(|e| e.found).unwrap_or_default();
        assert!(err.chars().count() < 50, "{err}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!(
            "{}attribute:a exists{}",
            "(".repeat(100_000),
            ")".repeat(100_000)
        );
        let err = parse(&deep).err().map(|e| e.expected).unwrap_or_default();
        assert!(err.contains("levels of nesting"), "{err}");
        let nots = format!("{}attribute:a exists", "not ".repeat(100_000));
        assert!(parse(&nots).is_err());
        let bangs = format!("{}attribute:a exists", "!".repeat(100_000));
        assert!(parse(&bangs).is_err());
        // Within the limit is fine.
        let ok = format!("{}attribute:a exists{}", "(".repeat(60), ")".repeat(60));
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn long_flat_chains_stay_flat() {
        let src = vec!["attribute:a exists"; 50_000].join(" and ");
        let e = parse(&src);
        assert!(matches!(&e, Ok(Expr::And(v)) if v.len() == 50_000));
        assert_eq!(e.map(|e| e.eval(&inst_a())), Ok(false));
    }

    #[test]
    fn nested_groups_keep_their_shape() {
        let e = parse("(attribute:a exists and attribute:b exists) and attribute:c exists");
        let printed = e.as_ref().map(|e| e.to_string());
        assert_eq!(
            printed.as_deref(),
            Ok("(attribute:a exists and attribute:b exists) and attribute:c exists")
        );
        let e = parse("not (attribute:a == b)").map(|e| e.to_string());
        assert_eq!(e.as_deref(), Ok("not attribute:a == b"));
    }

    #[test]
    fn canonical_form_of_examples() {
        let cases = [
            ("attribute:x equals 'a b'", "attribute:x == \"a b\""),
            (
                "attribute:x in [ 'a,b' , c ]",
                "attribute:x in [\"a,b\", c]",
            ),
            (
                "attribute:x == 'say \"hi\"'",
                "attribute:x == \"say \\\"hi\\\"\"",
            ),
            ("attribute:x =~ \"t2\\.m\"", "attribute:x =~ t2\\.m"),
            ("attribute:x == ''", "attribute:x == \"\""),
            ("attribute:x == 'and'", "attribute:x == \"and\""),
            (
                "task:group exists || attribute:x not_exists",
                "task:group exists or attribute:x !exists",
            ),
            (
                "! (attribute:x exists || task:group exists)",
                "not (attribute:x exists or task:group exists)",
            ),
        ];
        for (src, want) in cases {
            assert_eq!(
                parse(src).map(|e| e.to_string()).as_deref(),
                Ok(want),
                "{src}"
            );
        }
    }

    #[test]
    fn is_static() {
        let stat = |s: &str| parse(s).map(|e| e.is_static());
        assert_eq!(
            stat("attribute:a exists and not agentConnected == true"),
            Ok(true)
        );
        assert_eq!(
            stat("attribute:a exists or runningTasksCount < 3"),
            Ok(false)
        );
        assert_eq!(stat("not task:group exists"), Ok(false));
        assert_eq!(
            stat("registeredAt > 2018-01-01 and ec2InstanceId == i-1 and agentVersion > 1"),
            Ok(true)
        );
    }

    // --- property tests --------------------------------------------------

    fn subject_strategy() -> impl Strategy<Value = Subject> {
        prop_oneof![
            Just(Subject::AgentConnected),
            Just(Subject::AgentVersion),
            Just(Subject::Ec2InstanceId),
            Just(Subject::RegisteredAt),
            Just(Subject::RunningTasksCount),
            Just(Subject::TaskGroup),
            "[a-zA-Z][a-zA-Z0-9._:!\"'-]{0,12}".prop_map(Subject::Attribute),
        ]
    }

    /// Texts that exercise quoting: delimiters, quotes, backslashes, keywords, unicode.
    fn text_strategy() -> BoxedStrategy<String> {
        prop_oneof![
            "[a-z0-9.:*-]{1,10}",
            "[ a-z\\[\\](),'\"\\\\]{0,10}",
            "\\PC{0,10}",
            prop::sample::select(vec![
                "and", "OR", "not", "!", "&&", "||", "==", "in", "", "\\", "\"", "'x"
            ])
            .prop_map(str::to_owned),
        ]
        .boxed()
    }

    fn value_text_strategy(s: &Subject) -> BoxedStrategy<String> {
        match s {
            Subject::AgentConnected => prop::sample::select(vec!["true", "false", "TRUE", "False"])
                .prop_map(str::to_owned)
                .boxed(),
            Subject::RunningTasksCount => any::<i64>().prop_map(|i| i.to_string()).boxed(),
            Subject::RegisteredAt => (
                1970i32..2100,
                1u32..=12,
                1u32..=28,
                0u32..24,
                0u32..60,
                0u32..60,
                0u8..3,
            )
                .prop_map(|(y, mo, d, h, mi, s, form)| match form {
                    0 => format!("{y:04}-{mo:02}-{d:02}"),
                    1 => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
                    _ => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.25+05:30"),
                })
                .boxed(),
            _ => text_strategy(),
        }
    }

    fn regex_strategy() -> BoxedStrategy<String> {
        prop_oneof![
            prop::sample::select(vec![
                "t2.*",
                "[a-z]+",
                "a b",
                "\"q\"",
                "x\\\\y",
                "t2\\.micro",
                "(a|b),c",
                "",
                "'",
                "\\d{2,3}",
            ])
            .prop_map(str::to_owned),
            "[a-z.*+?]{1,8}".prop_filter("valid regex", |s| Regex::new(s).is_ok()),
        ]
        .boxed()
    }

    fn condition_strategy() -> impl Strategy<Value = Condition> {
        subject_strategy().prop_flat_map(|s| {
            let ops = s.ops().to_vec();
            let vals = value_text_strategy(&s);
            (
                Just(s),
                prop::sample::select(ops),
                prop::collection::vec(vals, 0..4),
                regex_strategy(),
            )
                .prop_filter_map("valid argument", |(subject, op, texts, re)| {
                    let arg = match op {
                        Op::Exists | Op::NotExists => Arg::None,
                        Op::In | Op::NotIn => Arg::List(
                            texts
                                .into_iter()
                                .map(|t| make_value(&subject, t))
                                .collect::<Result<_, _>>()
                                .ok()?,
                        ),
                        Op::Matches | Op::NotMatches => Arg::Regex(make_pattern(re).ok()?),
                        _ => Arg::Value(make_value(&subject, texts.into_iter().next()?).ok()?),
                    };
                    Some(Condition { subject, op, arg })
                })
        })
    }

    fn expr_strategy() -> impl Strategy<Value = Expr> {
        condition_strategy()
            .prop_map(Expr::Cond)
            .prop_recursive(5, 48, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
                    prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
                    inner.prop_map(|e| Expr::Not(Box::new(e))),
                ]
            })
    }

    /// Token soup that reaches deep into the parser, unlike uniform random text.
    fn token_soup() -> impl Strategy<Value = String> {
        let toks = vec![
            "(",
            ")",
            "[",
            "]",
            ",",
            "and",
            "or",
            "not",
            "!",
            "&&",
            "||",
            "attribute:a",
            "!attribute:b",
            "task:group",
            "runningTasksCount",
            "registeredAt",
            "agentConnected",
            "agentVersion",
            "ec2InstanceId",
            "==",
            "!=",
            ">=",
            "<",
            "in",
            "not_in",
            "!in",
            "=~",
            "!~",
            "exists",
            "!exists",
            "x",
            "1",
            "-5",
            "true",
            "'a b'",
            "\"q",
            "2018-01-01",
            "t2.*",
            "[a-",
            "é",
            "\\",
        ];
        prop::collection::vec(prop::sample::select(toks), 0..16).prop_map(|v| v.join(" "))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn display_reparses_to_same_tree(e in expr_strategy()) {
            let printed = e.to_string();
            let back = parse(&printed);
            prop_assert_eq!(back.as_ref(), Ok(&e), "printed: {}", printed);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,64}") {
            if let Ok(e) = parse(&s) {
                prop_assert_eq!(parse(&e.to_string()), Ok(e.clone()));
                let _ = e.eval(&inst_a());
            }
        }

        #[test]
        fn parse_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let s = String::from_utf8_lossy(&bytes);
            let _ = parse(&s);
        }

        #[test]
        fn token_soup_parses_or_errors_cleanly(s in token_soup()) {
            match parse(&s) {
                Ok(e) => {
                    prop_assert_eq!(parse(&e.to_string()), Ok(e.clone()), "{}", s);
                    let _ = (e.eval(&inst_a()), e.eval(&inst_b()), e.is_static());
                }
                Err(err) => prop_assert!(err.position <= s.len()),
            }
        }
    }
}
