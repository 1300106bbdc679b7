//! Tests of the query language: examples, errors, canonical printing and
//! property tests (printing re-parses to the same tree, no input panics).

use super::parse::{make_pattern, make_value};
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
