//! `#{Namespace.Variable}` references in configuration values.
//!
//! CodePipeline resolves references when an action starts: `#{variables.X}`
//! is a pipeline-level variable, `#{codepipeline.PipelineExecutionId}` the
//! execution's id, and `#{NS.X}` an output variable of an earlier action
//! whose namespace is `NS`. A reference that cannot be resolved fails the
//! action (AWS fails it the same way at run time); text that is not a
//! well-formed reference is left as written.

use std::collections::BTreeMap;

/// Every variable visible to an action: namespace → name → value.
pub type Scope = BTreeMap<String, BTreeMap<String, String>>;

/// Replaces every `#{ns.name}` in `text` from `scope`; the error names the
/// first reference that has no value.
pub fn resolve(text: &str, scope: &Scope) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("#{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match parse_reference(after) {
            Some((ns, name, len)) => {
                let value = scope
                    .get(ns)
                    .and_then(|vars| vars.get(name))
                    .ok_or_else(|| {
                        format!("the variable reference #{{{ns}.{name}}} has no value")
                    })?;
                out.push_str(value);
                rest = &after[len..];
            }
            None => {
                out.push_str("#{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// `ns.name}` at the start of `s`: the two parts and the length consumed.
fn parse_reference(s: &str) -> Option<(&str, &str, usize)> {
    let end = s.find('}')?;
    let inner = &s[..end];
    let (ns, name) = inner.split_once('.')?;
    let ok = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '@' | '-' | '_'))
    };
    (ok(ns) && ok(name)).then_some((ns, name, end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        let mut s = Scope::new();
        s.entry("SourceVariables".into())
            .or_default()
            .insert("CommitId".into(), "abc123".into());
        s.entry("variables".into())
            .or_default()
            .insert("Env".into(), "prod".into());
        s
    }

    #[test]
    fn references_are_replaced() {
        assert_eq!(
            resolve(
                "deploy #{SourceVariables.CommitId} to #{variables.Env}",
                &scope()
            ),
            Ok("deploy abc123 to prod".into())
        );
    }

    #[test]
    fn an_unknown_reference_is_an_error_naming_it() {
        assert_eq!(
            resolve("#{SourceVariables.Branch}", &scope()),
            Err("the variable reference #{SourceVariables.Branch} has no value".into())
        );
    }

    #[test]
    fn text_that_is_not_a_reference_stays() {
        for text in ["#{", "#{}", "#{nodot}", "a #{x y.z} b", "#{a.b", "price #5"] {
            assert_eq!(resolve(text, &scope()), Ok(text.to_string()), "{text}");
        }
    }

    #[test]
    fn values_are_not_resolved_again() {
        let mut s = scope();
        s.entry("A".into())
            .or_default()
            .insert("x".into(), "#{variables.Env}".into());
        assert_eq!(resolve("#{A.x}", &s), Ok("#{variables.Env}".into()));
    }
}
