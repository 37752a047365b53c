//! A small, bounded XML tree for report files.
//!
//! Report files come from the build, so they are treated as hostile: no DTD
//! is read and no custom entity is expanded (an unknown `&name;` stays as
//! written, so entity bombs have nothing to expand), nesting is limited to
//! [`MAX_DEPTH`], and every error is a value, never a panic. The tree keeps
//! only what the readers need: local names (namespace prefixes dropped),
//! attributes, children and the concatenated text.

use std::borrow::Cow;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::ReportError;

/// Deepest element nesting accepted.
pub(crate) const MAX_DEPTH: usize = 256;

/// One element.
#[derive(Debug, Default)]
pub(crate) struct Element {
    /// Local name (`ns:testcase` is `testcase`).
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    /// Text and CDATA directly inside, concatenated.
    pub text: String,
}

impl Element {
    /// The value of attribute `name` (local name).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first child called `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child called `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The trimmed text, or `None` when blank.
    pub fn text_opt(&self) -> Option<String> {
        let t = self.text.trim();
        (!t.is_empty()).then(|| t.to_string())
    }

    /// An attribute parsed as a counter; missing or malformed counts as 0.
    pub fn count(&self, name: &str) -> u64 {
        self.attr(name)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    }
}

/// Decodes report bytes to text: UTF-8 (with or without BOM) or UTF-16 with
/// BOM (Visual Studio writes TRX that way); other bytes are replaced.
pub(crate) fn decode(bytes: &[u8]) -> Cow<'_, str> {
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return String::from_utf8_lossy(rest);
    }
    let utf16 = |rest: &[u8], le: bool| {
        let units: Vec<u16> = rest
            .chunks_exact(2)
            .map(|p| {
                if le {
                    u16::from_le_bytes([p[0], p[1]])
                } else {
                    u16::from_be_bytes([p[0], p[1]])
                }
            })
            .collect();
        Cow::Owned(String::from_utf16_lossy(&units))
    };
    if let Some(rest) = bytes.strip_prefix(b"\xFF\xFE") {
        return utf16(rest, true);
    }
    if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
        return utf16(rest, false);
    }
    String::from_utf8_lossy(bytes)
}

/// Parses `bytes` into the root element.
pub(crate) fn parse(bytes: &[u8]) -> Result<Element, ReportError> {
    let text = decode(bytes);
    let mut reader = Reader::from_str(&text);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let xml_err = |reader: &Reader<&[u8]>, message: String| ReportError::Xml {
        position: reader.error_position().max(reader.buffer_position()),
        message,
    };
    loop {
        let event = reader
            .read_event()
            .map_err(|e| xml_err(&reader, e.to_string()))?;
        match event {
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(ReportError::TooDeep { limit: MAX_DEPTH });
                }
                if root.is_some() && stack.is_empty() {
                    return Err(xml_err(&reader, "more than one root element".into()));
                }
                stack.push(element(&start));
            }
            Event::Empty(start) => {
                if root.is_some() && stack.is_empty() {
                    return Err(xml_err(&reader, "more than one root element".into()));
                }
                let el = element(&start);
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                // quick-xml has checked that the name matches.
                let Some(el) = stack.pop() else {
                    return Err(xml_err(&reader, "closing tag without opening".into()));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                if let Some(el) = stack.last_mut() {
                    match t.unescape() {
                        Ok(s) => el.text.push_str(&s),
                        // An entity we do not expand (DTD-defined): keep it raw.
                        Err(_) => el.text.push_str(&String::from_utf8_lossy(&t)),
                    }
                } else if !t.iter().all(u8::is_ascii_whitespace) {
                    return Err(xml_err(&reader, "text outside the root element".into()));
                }
            }
            Event::CData(c) => {
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(&String::from_utf8_lossy(&c));
                }
            }
            Event::Eof => break,
            // Declarations, comments, processing instructions and the DTD
            // (never interpreted) carry nothing a report needs.
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(xml_err(
            &reader,
            format!(
                "unexpected end of file inside <{}>",
                stack[stack.len() - 1].name
            ),
        ));
    }
    root.ok_or_else(|| xml_err(&reader, "no root element".into()))
}

fn element(start: &BytesStart<'_>) -> Element {
    let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
    let attrs = start
        .attributes()
        // A malformed attribute list yields what parsed before the problem.
        .map_while(Result::ok)
        .map(|a| {
            let key = String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned();
            let value = match a.unescape_value() {
                Ok(v) => v.into_owned(),
                Err(_) => String::from_utf8_lossy(&a.value).into_owned(),
            };
            (key, value)
        })
        .collect();
    Element {
        name,
        attrs,
        ..Element::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_tree() {
        let root = parse(b"<?xml version='1.0'?><a x='1'><b>t&amp;u</b><c/><![CDATA[<z>]]></a>")
            .expect("parse");
        assert_eq!(root.name, "a");
        assert_eq!(root.attr("x"), Some("1"));
        assert_eq!(root.child("b").map(|b| b.text.as_str()), Some("t&u"));
        assert_eq!(root.text, "<z>");
    }

    #[test]
    fn entities_are_not_expanded() {
        let bomb = br#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
<lolz>&lol2;</lolz>"#;
        let root = parse(bomb).expect("parse");
        assert_eq!(root.text, "&lol2;");
    }

    #[test]
    fn depth_is_limited() {
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(matches!(
            parse(deep.as_bytes()),
            Err(ReportError::TooDeep { .. })
        ));
    }

    #[test]
    fn malformed_is_an_error() {
        for bad in [
            &b""[..],
            b"<a>",
            b"<a></b>",
            b"<a/><b/>",
            b"text",
            b"<a x='1' x='2'/>",
        ] {
            let r = parse(bad);
            assert!(
                r.is_err() || bad.starts_with(b"<a x"),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn utf16_with_bom() {
        let mut bytes = vec![0xFF, 0xFE];
        for u in "<r a=\"é\"/>".encode_utf16() {
            bytes.extend_from_slice(&u.to_le_bytes());
        }
        let root = parse(&bytes).expect("parse");
        assert_eq!(root.attr("a"), Some("é"));
    }
}
