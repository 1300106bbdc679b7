//! Evaluation of a parsed expression against one instance: no parsing and
//! no allocation.

use std::cmp::Ordering;

use super::{Arg, Condition, Expr, Op, QueryTarget, Subject, Typed, Value};

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
pub(super) fn parse_num(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|n| n.is_finite())
}

pub(super) fn version_component(c: &str) -> Option<u64> {
    if c.is_empty() || !c.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    c.parse().ok()
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
