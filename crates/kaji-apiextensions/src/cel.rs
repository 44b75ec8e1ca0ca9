//! CEL (Common Expression Language) for `x-kubernetes-validations` rules
//! (<https://kubernetes.io/docs/reference/using-api/cel/>): a rule is compiled once into a
//! [`Program`] and evaluated with `self` bound to the value at the schema node that carries it,
//! and `oldSelf` to the old value for transition rules.
//!
//! Our own evaluator (the Rust CEL crates bring ANTLR and chrono): `lexer` and `parser` turn the
//! text into a checked tree, `eval` walks it over `value::Val`s made from the JSON, `functions`
//! holds the standard library and Kubernetes' extensions. Without the schema's types, checks that
//! upstream's type checker does at compile time (unknown fields, wrong operand types) happen at
//! evaluation instead.

mod eval;
mod functions;
mod lexer;
mod parser;
mod time;
mod value;

#[cfg(test)]
mod tests;

use serde_json::Value;

const PARSE_STACK: usize = 64 << 20;
/// Deeper programs are evaluated on a thread of their own with `PARSE_STACK` (a level takes a
/// few kilobytes of stack in debug builds; real rules are rarely more than a dozen deep).
const INLINE_DEPTH: u32 = 16;

/// A compiled rule.
#[derive(Clone, Debug)]
pub struct Program {
    expr: parser::Expr,
    uses_old_self: bool,
}

impl Program {
    /// Compiles a rule. The error reads as cel-go's issues do after upstream's
    /// `compilation failed: ` (`ERROR: <input>:1:6: Syntax error: ...`, then the source line and
    /// a caret under the column).
    pub fn compile(rule: &str) -> Result<Program, String> {
        // The recursive-descent parser needs more stack for deeply nested rules than an async
        // worker may have (debug builds take kilobytes per level); CRDs are compiled rarely.
        let parsed = if shallow(rule) {
            Ok(Ok(parser::parse(rule)))
        } else {
            std::thread::scope(|s| {
                std::thread::Builder::new()
                    .name("cel-compile".to_string())
                    .stack_size(PARSE_STACK)
                    .spawn_scoped(s, || parser::parse(rule))
                    .map(|h| h.join())
            })
        };
        let parsed = match parsed {
            Ok(Ok(r)) => r,
            _ => return Err("ERROR: <input>:1:1: internal error compiling the rule".to_string()),
        };
        match parsed {
            Ok(expr) => {
                let uses_old_self = parser::uses_ident(&expr, "oldSelf");
                Ok(Program {
                    expr,
                    uses_old_self,
                })
            }
            Err(e) => Err(compile_error(rule, e.pos, &e.msg)),
        }
    }

    /// Compiles an expression of an environment with its own variables (an admission policy's
    /// `object`, `oldObject`, `request`, `params`, `namespaceObject`, `variables`): references
    /// to them are checked as `self`'s are. Deeply nested expressions are refused here (they
    /// are parsed on the caller's stack).
    pub fn compile_with_variables(expr: &str, variables: &[&str]) -> Result<Program, String> {
        if !shallow(expr) {
            return Err("ERROR: <input>:1:1: expression recursion limit exceeded".to_string());
        }
        match parser::parse_with(expr, variables) {
            Ok(expr) => Ok(Program { expr, uses_old_self: false }),
            Err(e) => Err(compile_error(expr, e.pos, &e.msg)),
        }
    }

    /// Evaluates a program of `compile_with_variables` with the variables bound (JSON values;
    /// a missing one reads as `null`, as an absent `oldObject` on create does upstream).
    pub fn eval_with(&self, variables: &[(&str, &Value)]) -> Result<Value, String> {
        let run = || {
            let mut env = eval::Env::new(value::Val::Null, None);
            for (name, v) in variables {
                env.bind(name, value::Val::from_json(v));
            }
            env.eval(&self.expr).map(|v| v.to_json())
        };
        self.on_enough_stack(run)
    }

    /// Whether the rule reads `oldSelf` (a transition rule: evaluated only on updates where the
    /// old value exists).
    pub fn uses_old_self(&self) -> bool {
        self.uses_old_self
    }

    /// Evaluates the rule; the CEL result comes back as JSON (a bool for rules, a string for a
    /// `messageExpression`). Errors are cel-go's runtime errors (`no such key: foo`,
    /// `no such overload`, `integer overflow`, `division by zero`,
    /// `operation cancelled: actual cost limit exceeded`).
    pub fn eval(&self, self_: &Value, old_self: Option<&Value>) -> Result<Value, String> {
        self.run(self_, old_self, false)
    }

    /// Evaluates a rule with `optionalOldSelf: true`: `oldSelf` is an optional value,
    /// `optional.none()` on create (or where no old value corresponds), `optional.of(old)` on
    /// update, so the rule reads it with `oldSelf.hasValue()`, `oldSelf.value()`, `orValue()`.
    pub fn eval_optional_old_self(
        &self,
        self_: &Value,
        old_self: Option<&Value>,
    ) -> Result<Value, String> {
        self.run(self_, old_self, true)
    }

    fn run(
        &self,
        self_: &Value,
        old_self: Option<&Value>,
        optional: bool,
    ) -> Result<Value, String> {
        let run = || {
            let old = old_self.map(value::Val::from_json);
            let old = if optional {
                Some(value::Val::Optional(old.map(std::rc::Rc::new)))
            } else {
                old
            };
            let mut env = eval::Env::new(value::Val::from_json(self_), old);
            env.eval(&self.expr).map(|v| v.to_json())
        };
        self.on_enough_stack(run)
    }

    /// Runs an evaluation on the caller's stack, or on a thread with `PARSE_STACK` for deep
    /// programs.
    fn on_enough_stack(&self, run: impl FnOnce() -> Result<Value, String> + Send) -> Result<Value, String> {
        if self.expr.depth() <= INLINE_DEPTH {
            return run();
        }
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("cel-eval".to_string())
                .stack_size(PARSE_STACK)
                .spawn_scoped(s, run)
                .map_err(|e| e.to_string())
                .and_then(|h| h.join().unwrap_or_else(|_| Err("internal error".to_string())))
        })
    }
}

/// Whether the parser's recursion stays shallow for this text: few nested brackets, ternaries
/// and unary operators (the common rule), so it can be parsed on the caller's stack.
fn shallow(rule: &str) -> bool {
    let (mut depth, mut max, mut unary) = (0i32, 0i32, 0i32);
    for c in rule.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | ']' | '}' => depth -= 1,
            '?' | '!' | '-' => unary += 1,
            _ => {}
        }
    }
    max + unary <= 8
}

/// cel-go's error display: location, message, the offending line and a caret.
fn compile_error(src: &str, pos: usize, msg: &str) -> String {
    let pos = pos.min(src.len());
    let before = &src[..pos];
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = src[line_start..pos].chars().count();
    let line = src[line_start..].lines().next().unwrap_or("");
    format!(
        "ERROR: <input>:{line_no}:{}: {msg}\n | {line}\n | {}^",
        col + 1,
        ".".repeat(col)
    )
}
