use serde_json::{Value, json};

use super::Program;

fn eval(rule: &str, self_: &Value) -> Result<Value, String> {
    Program::compile(rule)?.eval(self_, None)
}

fn holds(rule: &str, self_: &Value) -> bool {
    match eval(rule, self_) {
        Ok(Value::Bool(b)) => b,
        other => panic!("{rule}: {other:?}"),
    }
}

#[test]
fn rules_from_the_kubernetes_docs() {
    let spec = json!({"minReplicas": 1, "replicas": 3, "maxReplicas": 5});
    assert!(holds(
        "self.minReplicas <= self.replicas && self.replicas <= self.maxReplicas",
        &spec
    ));
    assert!(!holds("self.minReplicas > self.replicas", &spec));
    assert!(holds(
        "self.all(x, x.startsWith('a'))",
        &json!(["ab", "ac"])
    ));
    assert!(!holds(
        "self.all(x, x.startsWith('a'))",
        &json!(["ab", "bc"])
    ));
    assert!(holds(
        "has(self.foo) == has(self.bar)",
        &json!({"foo": 1, "bar": 2})
    ));
    assert!(!holds("has(self.foo) == has(self.bar)", &json!({"foo": 1})));
    assert!(holds("self.size() <= 10", &json!([1, 2, 3])));
    assert!(holds("self.matches('^[a-z]+$')", &json!("abc")));
    assert!(!holds("self.matches('^[a-z]+$')", &json!("aBc")));
    assert!(holds(
        "self.map(x, x * 2).exists(y, y > 4)",
        &json!([1, 2, 3])
    ));
    assert!(!holds(
        "self.map(x, x * 2).exists(y, y > 4)",
        &json!([1, 2])
    ));
    assert!(holds("'key' in self", &json!({"key": "v"})));
    assert!(!holds("'key' in self", &json!({"other": "v"})));
    assert!(holds(
        "self.metadata.name.startsWith(self.prefix)",
        &json!({"metadata": {"name": "foo-1"}, "prefix": "foo"})
    ));
    assert!(holds(
        "self.set1.all(e, !(e in self.set2))",
        &json!({"set1": ["a", "b"], "set2": ["c"]})
    ));
    assert!(holds(
        "size(self.names) == size(self.details) && self.names.all(n, n in self.details)",
        &json!({"names": ["a"], "details": {"a": 1}})
    ));
    assert!(holds(
        "self.details.all(key, self.details[key].matches('^[a-zA-Z]*$'))",
        &json!({"details": {"a": "xyz", "b": "Q"}})
    ));
    assert!(holds(
        "self.widgets.exists_one(w, w.name == 'x')",
        &json!({"widgets": [{"name": "x"}, {"name": "y"}]})
    ));
    assert!(holds(
        "type(self) == string ? self == '99%' : self == 42",
        &json!("99%")
    ));
    assert!(holds(
        "type(self) == string ? self == '99%' : self == 42",
        &json!(42)
    ));
    assert!(holds(
        "self.health.startsWith('ok')",
        &json!({"health": "ok-ish"})
    ));
    assert!(holds(
        "self.widgets.filter(w, w.size > 1).size() == 1",
        &json!({"widgets": [{"size": 1}, {"size": 3}]})
    ));
}

#[test]
fn transition_rules() {
    let p = Program::compile("self == oldSelf").unwrap();
    assert!(p.uses_old_self());
    assert_eq!(p.eval(&json!("a"), Some(&json!("a"))), Ok(json!(true)));
    assert_eq!(
        p.eval(&json!({"x": [1]}), Some(&json!({"x": [2]}))),
        Ok(json!(false))
    );
    assert!(
        !Program::compile("self.all(oldSelf, oldSelf > 0)")
            .unwrap()
            .uses_old_self()
    );
    assert!(!Program::compile("self > 1").unwrap().uses_old_self());
    let p = Program::compile("oldSelf.replicas <= self.replicas").unwrap();
    assert!(p.uses_old_self());
    assert_eq!(
        p.eval(&json!({"replicas": 3}), Some(&json!({"replicas": 2}))),
        Ok(json!(true))
    );
}

#[test]
fn optional_old_self() {
    let p = Program::compile("!oldSelf.hasValue() || self >= oldSelf.value()").unwrap();
    assert!(p.uses_old_self());
    assert_eq!(p.eval_optional_old_self(&json!(1), None), Ok(json!(true)));
    assert_eq!(
        p.eval_optional_old_self(&json!(1), Some(&json!(2))),
        Ok(json!(false))
    );
    assert_eq!(
        p.eval_optional_old_self(&json!(3), Some(&json!(2))),
        Ok(json!(true))
    );
    let p = Program::compile("self == oldSelf.orValue(self)").unwrap();
    assert_eq!(p.eval_optional_old_self(&json!("a"), None), Ok(json!(true)));
}

#[test]
fn literals() {
    let n = Value::Null;
    assert_eq!(eval("1 + 2 * 3", &n), Ok(json!(7)));
    assert_eq!(eval("-9223372036854775808", &n), Ok(json!(i64::MIN)));
    assert_eq!(eval("0x10 + 1", &n), Ok(json!(17)));
    assert_eq!(eval("3u + 4u", &n), Ok(json!(7)));
    assert_eq!(eval("1.5 * 2.0", &n), Ok(json!(3.0)));
    assert_eq!(eval("1e3", &n), Ok(json!(1000.0)));
    assert_eq!(eval(r#""a\tb\u00e9\x41\101""#, &n), Ok(json!("a\tbéAA")));
    assert_eq!(eval(r"r'a\tb'", &n), Ok(json!("a\\tb")));
    assert_eq!(eval("'''multi\nline'''", &n), Ok(json!("multi\nline")));
    assert_eq!(eval("b'abc'.size()", &n), Ok(json!(3)));
    assert_eq!(
        eval("[1, 'a', null, true]", &n),
        Ok(json!([1, "a", null, true]))
    );
    assert_eq!(
        eval("{'a': 1, 'b': [2]}", &n),
        Ok(json!({"a": 1, "b": [2]}))
    );
    assert_eq!(eval("{'a': 1,}.a", &n), Ok(json!(1)));
    assert_eq!(eval("[1, 2, 3][1]", &n), Ok(json!(2)));
    assert_eq!(eval("'é'.size()", &n), Ok(json!(1)));
    assert_eq!(eval("null == null", &n), Ok(json!(true)));
    assert_eq!(eval("// comment\n true", &n), Ok(json!(true)));
}

#[test]
fn arithmetic_and_errors() {
    let n = Value::Null;
    assert_eq!(
        eval("9223372036854775807 + 1", &n),
        Err("integer overflow".into())
    );
    assert_eq!(eval("1 / 0", &n), Err("division by zero".into()));
    assert_eq!(eval("1 % 0", &n), Err("modulus by zero".into()));
    assert_eq!(eval("7 / 2", &n), Ok(json!(3)));
    assert_eq!(eval("-7 % 3", &n), Ok(json!(-1)));
    assert_eq!(eval("1 + 'a'", &n), Err("no such overload".into()));
    assert_eq!(eval("'a' + 'b'", &n), Ok(json!("ab")));
    assert_eq!(eval("[1] + [2]", &n), Ok(json!([1, 2])));
    assert_eq!(
        eval("1 == 1.0 && 1u == 1 && 2 > 1.5 && 1u < 2", &n),
        Ok(json!(true))
    );
    assert_eq!(eval("1 == 'a'", &n), Ok(json!(false)));
    assert_eq!(eval("1 < 'a'", &n), Err("no such overload".into()));
    assert_eq!(eval("true ? 1 : 2", &n), Ok(json!(1)));
    assert_eq!(eval("!true || !false", &n), Ok(json!(true)));
}

#[test]
fn logic_absorbs_errors() {
    let s = json!({"a": 1});
    assert!(!holds("self.missing == 1 && false", &s));
    assert!(!holds("false && self.missing == 1", &s));
    assert!(holds("self.missing == 1 || true", &s));
    assert!(holds("true || self.missing == 1", &s));
    assert_eq!(
        eval("self.missing == 1 && true", &s),
        Err("no such key: missing".into())
    );
    assert_eq!(
        eval("self.missing == 1 || false", &s),
        Err("no such key: missing".into())
    );
    assert!(holds("!has(self.b) || self.b > 0", &s));
    assert!(
        !holds("[0, -1].all(x, 1 / x > 0)", &s),
        "false absorbs the division error"
    );
    assert_eq!(
        eval("[1, 0].all(x, 1 / x >= 0)", &s),
        Err("division by zero".into())
    );
    assert!(holds("[0, 1].exists(x, 1 / x > 0)", &s));
}

#[test]
fn field_access_and_index() {
    let s = json!({"spec": {"items": [{"name": "a"}], "labels": {"app.kubernetes.io/name": "x"}, "foo-bar": 1, "namespace": "ns"}});
    assert_eq!(eval("self.spec.items[0].name", &s), Ok(json!("a")));
    assert_eq!(
        eval("self.spec.labels['app.kubernetes.io/name']", &s),
        Ok(json!("x"))
    );
    assert_eq!(eval("self.spec.foo__dash__bar", &s), Ok(json!(1)));
    assert_eq!(eval("self.spec.__namespace__", &s), Ok(json!("ns")));
    assert_eq!(
        eval("self.spec.items[1]", &s),
        Err("index out of bounds: 1".into())
    );
    assert_eq!(eval("self.spec.nope", &s), Err("no such key: nope".into()));
    assert_eq!(
        eval("self.spec.labels['nope']", &s),
        Err("no such key: nope".into())
    );
    assert!(holds("has(self.spec.items) && !has(self.spec.nope)", &s));
}

#[test]
fn string_functions() {
    let n = Value::Null;
    let cases = [
        ("'abc'.contains('b')", json!(true)),
        ("'abc'.endsWith('bc')", json!(true)),
        ("'ABc'.lowerAscii()", json!("abc")),
        ("'abc'.upperAscii()", json!("ABC")),
        ("'a,b,c'.split(',')", json!(["a", "b", "c"])),
        ("'a,b,c'.split(',', 2)", json!(["a", "b,c"])),
        ("['a', 'b'].join('-')", json!("a-b")),
        ("['a', 'b'].join()", json!("ab")),
        ("'  x '.trim()", json!("x")),
        ("'hello'.substring(1, 3)", json!("el")),
        ("'hello'.substring(2)", json!("llo")),
        ("'hello'.indexOf('l')", json!(2)),
        ("'hello'.lastIndexOf('l')", json!(3)),
        ("'hello'.indexOf('z')", json!(-1)),
        ("'hello'.indexOf('l', 3)", json!(3)),
        ("'hello'.charAt(1)", json!("e")),
        ("'aaa'.replace('a', 'b')", json!("bbb")),
        ("'aaa'.replace('a', 'b', 1)", json!("baa")),
        ("'abc'.reverse()", json!("cba")),
        (
            "'%s has %d items (%.2f)'.format(['x', 3, 1.5])",
            json!("x has 3 items (1.50)"),
        ),
        ("strings.quote('a\"b')", json!("\"a\\\"b\"")),
        ("'abc 123 def 456'.find('[0-9]+')", json!("123")),
        ("'abc 123 def 456'.findAll('[0-9]+')", json!(["123", "456"])),
        ("matches('abc', 'b')", json!(true)),
        ("size('abc')", json!(3)),
    ];
    for (rule, want) in cases {
        assert_eq!(eval(rule, &n), Ok(want), "{rule}");
    }
    assert_eq!(
        eval("'abc'.substring(4)", &n),
        Err("index out of range: 4".into())
    );
}

#[test]
fn macros_on_lists_and_maps() {
    let n = Value::Null;
    assert_eq!(eval("[1, 2, 3].filter(x, x > 1)", &n), Ok(json!([2, 3])));
    assert_eq!(
        eval("[1, 2, 3].map(x, x > 1, x * 10)", &n),
        Ok(json!([20, 30]))
    );
    assert_eq!(
        eval("{'a': 1, 'b': 2}.map(k, k)", &n),
        Ok(json!(["a", "b"]))
    );
    assert_eq!(
        eval("{'a': 1, 'b': 2}.all(k, k.size() == 1)", &n),
        Ok(json!(true))
    );
    assert_eq!(eval("[1, 2, 1].exists_one(x, x == 2)", &n), Ok(json!(true)));
    assert_eq!(
        eval("[1, 2, 1].exists_one(x, x == 1)", &n),
        Ok(json!(false))
    );
    assert_eq!(
        eval("[[1, 2], [3]].all(l, l.all(x, x > 0))", &n),
        Ok(json!(true))
    );
    assert_eq!(
        eval("cel.bind(x, [1, 2], x + x)", &n),
        Ok(json!([1, 2, 1, 2]))
    );
    assert_eq!(eval("[].all(x, x > 0)", &n), Ok(json!(true)));
    assert_eq!(eval("[].exists(x, x > 0)", &n), Ok(json!(false)));
}

#[test]
fn conversions_and_types() {
    let n = Value::Null;
    let cases = [
        ("int('42')", json!(42)),
        ("int(3.9)", json!(3)),
        ("uint(3)", json!(3)),
        ("double(3)", json!(3.0)),
        ("string(12)", json!("12")),
        ("string(1.5)", json!("1.5")),
        ("string(true)", json!("true")),
        ("bool('true')", json!(true)),
        ("type(1) == int", json!(true)),
        ("type('a') == string", json!(true)),
        ("type([]) == list && type({}) == map", json!(true)),
        ("dyn(1) == 1", json!(true)),
    ];
    for (rule, want) in cases {
        assert_eq!(eval(rule, &n), Ok(want), "{rule}");
    }
    assert_eq!(eval("int(1e30)", &n), Err("integer overflow".into()));
    assert_eq!(
        eval("uint(-1)", &n),
        Err("unsigned integer overflow".into())
    );
    assert!(eval("int('x')", &n).is_err());
}

#[test]
fn durations_and_timestamps() {
    let n = Value::Null;
    let cases = [
        ("duration('1h30m') == duration('90m')", json!(true)),
        ("duration('1.5s') < duration('2s')", json!(true)),
        ("string(duration('1m30s'))", json!("90s")),
        ("string(duration('1.5s'))", json!("1.5s")),
        ("duration('2h').getMinutes()", json!(120)),
        (
            "timestamp('2023-01-02T03:04:05Z') < timestamp('2023-01-02T03:04:06Z')",
            json!(true),
        ),
        (
            "string(timestamp('2023-01-02T03:04:05+01:00'))",
            json!("2023-01-02T02:04:05Z"),
        ),
        (
            "timestamp('2024-02-29T12:00:00.5Z').getFullYear()",
            json!(2024),
        ),
        ("timestamp('2024-02-29T12:00:00.5Z').getMonth()", json!(1)),
        ("timestamp('2024-02-29T12:00:00.5Z').getDate()", json!(29)),
        (
            "timestamp('2024-02-29T12:00:00.5Z').getDayOfWeek()",
            json!(4),
        ),
        (
            "timestamp('2024-02-29T12:00:00.5Z').getDayOfYear()",
            json!(59),
        ),
        (
            "timestamp('2024-02-29T12:00:00.5Z').getMilliseconds()",
            json!(500),
        ),
        (
            "timestamp('2024-02-29T12:00:00Z').getHours('+02:00')",
            json!(14),
        ),
        (
            "string(timestamp('2023-01-01T00:00:00Z') + duration('36h'))",
            json!("2023-01-02T12:00:00Z"),
        ),
        (
            "timestamp('2023-01-02T00:00:00Z') - timestamp('2023-01-01T00:00:00Z') == duration('24h')",
            json!(true),
        ),
        ("int(timestamp('1970-01-01T00:01:00Z'))", json!(60)),
        ("string(timestamp(0))", json!("1970-01-01T00:00:00Z")),
    ];
    for (rule, want) in cases {
        assert_eq!(eval(rule, &n), Ok(want), "{rule}");
    }
    assert!(eval("duration('1x')", &n).is_err());
    assert!(eval("timestamp('2023-02-30T00:00:00Z')", &n).is_err());
}

#[test]
fn kubernetes_list_library() {
    let n = Value::Null;
    let cases = [
        ("[1, 2, 3].isSorted()", json!(true)),
        ("['b', 'a'].isSorted()", json!(false)),
        ("[1, 2, 3].sum()", json!(6)),
        ("[1.5, 2.5].sum()", json!(4.0)),
        ("[].sum()", json!(0)),
        ("[3, 1, 2].min()", json!(1)),
        ("[3, 1, 2].max()", json!(3)),
        ("[1, 2, 1].indexOf(1)", json!(0)),
        ("[1, 2, 1].lastIndexOf(1)", json!(2)),
        ("[1, 2, 3, 4].slice(1, 3)", json!([2, 3])),
        ("[[1], [2, [3]]].flatten()", json!([1, 2, [3]])),
        ("[1, 2, 1].distinct()", json!([1, 2])),
        ("[3, 1, 2].sort()", json!([1, 2, 3])),
        ("sets.contains([1, 2, 3], [2, 3])", json!(true)),
        ("sets.equivalent([1, 2], [2, 1, 1])", json!(true)),
        ("sets.intersects([1], [2])", json!(false)),
        ("math.greatest(1, 5, 3)", json!(5)),
        ("math.least([4, 2])", json!(2)),
    ];
    for (rule, want) in cases {
        assert_eq!(eval(rule, &n), Ok(want), "{rule}");
    }
    assert_eq!(eval("[].min()", &n), Err("min called on empty list".into()));
}

#[test]
fn urls_and_quantities() {
    let n = Value::Null;
    let cases = [
        (
            "url('https://example.com:8080/a/b?x=1&x=2').getScheme()",
            json!("https"),
        ),
        (
            "url('https://example.com:8080/a/b?x=1').getHost()",
            json!("example.com:8080"),
        ),
        (
            "url('https://example.com:8080/a/b').getHostname()",
            json!("example.com"),
        ),
        (
            "url('https://example.com:8080/a/b').getPort()",
            json!("8080"),
        ),
        ("url('https://[::1]:80/').getHostname()", json!("::1")),
        (
            "url('https://example.com/a/b').getEscapedPath()",
            json!("/a/b"),
        ),
        (
            "url('https://example.com/?x=1&x=2&y=').getQuery()",
            json!({"x": ["1", "2"], "y": [""]}),
        ),
        ("isURL('not a url')", json!(false)),
        ("isURL('/absolute/path')", json!(true)),
        ("quantity('1Gi').isGreaterThan(quantity('1G'))", json!(true)),
        ("quantity('500m').isLessThan(quantity('1'))", json!(true)),
        ("quantity('1k').compareTo(quantity('1000'))", json!(0)),
        (
            "quantity('1').add(quantity('500m')).isGreaterThan(quantity('1'))",
            json!(true),
        ),
        ("quantity('2').sub(1).asInteger()", json!(1)),
        ("quantity('1.5').isInteger()", json!(false)),
        ("quantity('250m').asApproximateFloat()", json!(0.25)),
        ("isQuantity('1Zi')", json!(false)),
        ("quantity('-1').sign()", json!(-1)),
        ("isIP('10.0.0.1') && isIP('fd00::1')", json!(true)),
        (
            "isIP('10.0.0.256') || isIP('010.0.0.1') || isIP('::ffff:1.2.3.4')",
            json!(false),
        ),
        ("isCIDR('10.0.0.0/8') && isCIDR('fd00::/64')", json!(true)),
        (
            "isCIDR('10.0.0.0/33') || isCIDR('10.0.0.0') || isCIDR('x/8')",
            json!(false),
        ),
    ];
    for (rule, want) in cases {
        assert_eq!(eval(rule, &n), Ok(want), "{rule}");
    }
}

#[test]
fn optionals() {
    let s = json!({"a": {"b": 1}});
    let cases = [
        ("self.?a.?b.orValue(0)", json!(1)),
        ("self.?x.?b.orValue(0)", json!(0)),
        ("self.?x.hasValue()", json!(false)),
        ("self.a[?'b'].value()", json!(1)),
        ("self.a[?'z'].or(optional.of(5)).value()", json!(5)),
        ("optional.none().orValue('d')", json!("d")),
        ("[1, ?optional.none(), ?optional.of(2)]", json!([1, 2])),
        ("{'k': 1, ?'j': self.?x}", json!({"k": 1})),
        ("optional.ofNonZeroValue('').hasValue()", json!(false)),
    ];
    for (rule, want) in cases {
        assert_eq!(eval(rule, &s), Ok(want), "{rule}");
    }
}

#[test]
fn compile_errors() {
    let err = Program::compile("self.").unwrap_err();
    assert!(
        err.starts_with(
            "ERROR: <input>:1:6: Syntax error: mismatched input '<EOF>' expecting IDENTIFIER"
        ),
        "{err}"
    );
    assert!(err.ends_with("\n | self.\n | .....^"), "{err}");
    let err = Program::compile("self.x == foo").unwrap_err();
    assert!(
        err.starts_with("ERROR: <input>:1:11: undeclared reference to 'foo' (in container '')"),
        "{err}"
    );
    let err = Program::compile("self.frobnicate()").unwrap_err();
    assert!(
        err.contains("undeclared reference to 'frobnicate'"),
        "{err}"
    );
    let err = Program::compile("self.all(1, true)").unwrap_err();
    assert!(err.contains("argument must be a simple name"), "{err}");
    let err = Program::compile("has(self)").unwrap_err();
    assert!(err.contains("invalid argument to has() macro"), "{err}");
    let err = Program::compile("self # 1").unwrap_err();
    assert!(
        err.contains("Syntax error: token recognition error at: '#'"),
        "{err}"
    );
    let err = Program::compile("self.matches('[')").unwrap_err();
    assert!(err.contains("invalid matches argument"), "{err}");
    let err = Program::compile("1 +\n(2").unwrap_err();
    assert!(
        err.starts_with("ERROR: <input>:2:3: Syntax error: mismatched input '<EOF>'"),
        "{err}"
    );
    assert!(Program::compile("'unterminated").is_err());
    assert!(Program::compile("x.all(x, x)").is_err());
    assert!(
        Program::compile("self.all(x, x > 0) && x > 0").is_err(),
        "x is out of scope"
    );
}

#[test]
fn deep_and_costly_rules_fail_cleanly() {
    let deep = format!("{}1{}", "(".repeat(1000), ")".repeat(1000));
    assert!(
        Program::compile(&deep)
            .unwrap_err()
            .contains("recursion limit")
    );
    let chain = format!("self{}", ".a".repeat(5000));
    assert!(
        Program::compile(&chain)
            .unwrap_err()
            .contains("recursion limit")
    );
    let sum = vec!["1"; 5000].join(" + ");
    assert!(
        Program::compile(&sum)
            .unwrap_err()
            .contains("recursion limit")
    );
    let list: Vec<i64> = (0..2000).collect();
    let err = eval("self.all(x, self.all(y, x + y >= 0))", &json!(list)).unwrap_err();
    assert_eq!(err, "operation cancelled: actual cost limit exceeded");
}

#[test]
fn message_expressions_return_strings() {
    let s = json!({"replicas": 7, "name": "web"});
    assert_eq!(
        eval(
            "'replicas ' + string(self.replicas) + ' too many for ' + self.name",
            &s
        ),
        Ok(json!("replicas 7 too many for web"))
    );
}

/// Rules near the depth limit evaluate even from a thread with little stack (an async worker).
#[test]
fn deep_rules_fit_a_small_stack() {
    let depth = 95;
    let p1 = Program::compile(&format!("{}self{}", "[".repeat(depth), "]".repeat(depth))).unwrap();
    let p2 = Program::compile(&format!("{}self{}", "(-".repeat(45), ")".repeat(45))).unwrap();
    let p3 =
        Program::compile(&format!("self{}", ".all(x, x".repeat(30) + &")".repeat(30))).unwrap();
    let r = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            // Shallow text parsed on this stack, but a tree 97 deep.
            let sum = vec!["self"; 98].join(" + ");
            assert_eq!(
                Program::compile(&sum).unwrap().eval(&json!(1), None),
                Ok(json!(98))
            );
            let a = p1.eval(&json!(1), None).map(|v| v.to_string().len());
            let b = p2.eval(&json!(1), None);
            let c = p3.eval(&json!([]), None);
            (a, b, c)
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(r, (Ok(2 * depth + 1), Ok(json!(-1)), Ok(json!(true))));
}

#[test]
fn programs_are_shareable() {
    fn shareable<T: Clone + std::fmt::Debug + Send + Sync + 'static>() {}
    shareable::<Program>();
    let p = Program::compile("self.matches('^a')").unwrap();
    let q = p.clone();
    let h = std::thread::spawn(move || q.eval(&json!("ab"), None));
    assert_eq!(h.join().unwrap(), Ok(json!(true)));
    assert_eq!(p.eval(&json!("ba"), None), Ok(json!(false)));
}

#[test]
fn declared_variables() {
    let p = Program::compile_with_variables("object.spec.replicas <= params.max && request.operation != 'DELETE'", &["object", "params", "request"]).unwrap();
    let (obj, params, req) = (json!({"spec": {"replicas": 3}}), json!({"max": 5}), json!({"operation": "CREATE"}));
    assert_eq!(p.eval_with(&[("object", &obj), ("params", &params), ("request", &req)]).unwrap(), json!(true));
    let many = json!({"spec": {"replicas": 9}});
    assert_eq!(p.eval_with(&[("object", &many), ("params", &params), ("request", &req)]).unwrap(), json!(false));
    let err = Program::compile_with_variables("objekt.spec", &["object"]).unwrap_err();
    assert!(err.contains("undeclared reference to 'objekt'"), "{err}");
    let null = Program::compile_with_variables("oldObject == null", &["oldObject"]).unwrap();
    assert_eq!(null.eval_with(&[("oldObject", &Value::Null)]).unwrap(), json!(true));
}
