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

mod eval;
mod lex;
mod parse;
mod print;
#[cfg(test)]
mod tests;

use regex::Regex;

pub use parse::parse;

/// Maximum nesting of parentheses and negations. Bounds the recursion of
/// parsing, evaluation, printing and dropping, so hostile input cannot
/// overflow the stack.
const MAX_DEPTH: usize = 64;

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

impl Op {
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
}
