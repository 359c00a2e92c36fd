//! A small writer for the response XML of the EC2 and Query protocols: elements with escaped
//! text, nested structures and `<item>` lists. Elements are written in order into one buffer.
//!
//! The writer is the last line of defence for well-formedness: whatever string reaches it, the
//! document stays XML 1.0. Markup characters are escaped, `\r` is written as `&#13;` (a parser
//! would otherwise turn it into `\n`), and the characters XML 1.0 forbids (C0 controls other
//! than tab, newline and carriage return; U+FFFE and U+FFFF) become U+FFFD. Input validation
//! (`cloud::validate`) refuses them before they are stored; this covers everything else (error
//! messages echoing client input, records written by older versions).

use std::fmt::{Display, Write};

/// XML namespace of EC2 responses.
pub const EC2_NS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

pub struct Xml {
    buf: String,
}

impl Xml {
    /// Starts `<{root} xmlns="{ns}">`.
    pub fn new(root: &str, ns: &str) -> Xml {
        let mut buf = String::with_capacity(512);
        buf.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<");
        buf.push_str(root);
        if !ns.is_empty() {
            let _ = write!(buf, " xmlns=\"{ns}\"");
        }
        buf.push('>');
        Xml { buf }
    }

    /// A leaf element with escaped text.
    pub fn elem(&mut self, name: &str, value: impl Display) -> &mut Self {
        let _ = write!(self.buf, "<{name}>");
        let start = self.buf.len();
        let _ = write!(self.buf, "{value}");
        if needs_escape(&self.buf[start..]) {
            let escaped = escape(&self.buf[start..]);
            self.buf.truncate(start);
            self.buf.push_str(&escaped);
        }
        let _ = write!(self.buf, "</{name}>");
        self
    }

    /// Escaped text inside the current element (the entries of a string list).
    pub fn text(&mut self, value: impl Display) -> &mut Self {
        self.buf.push_str(&escape(&value.to_string()));
        self
    }

    /// A leaf element written only when the value is present.
    pub fn opt(&mut self, name: &str, value: Option<impl Display>) -> &mut Self {
        if let Some(v) = value {
            self.elem(name, v);
        }
        self
    }

    /// A structure: `<name>` … `</name>` around what `f` writes.
    pub fn nest(&mut self, name: &str, f: impl FnOnce(&mut Xml)) -> &mut Self {
        let _ = write!(self.buf, "<{name}>");
        f(self);
        let _ = write!(self.buf, "</{name}>");
        self
    }

    /// An EC2 list: `<name><item>…</item>…</name>`; an empty list is written as `<name/>`.
    pub fn items<T>(
        &mut self,
        name: &str,
        items: impl IntoIterator<Item = T>,
        mut f: impl FnMut(&mut Xml, T),
    ) -> &mut Self {
        self.list(name, "item", items, &mut f)
    }

    /// A list with a chosen member element name (`member` in the Query protocol).
    pub fn list<T>(
        &mut self,
        name: &str,
        member: &str,
        items: impl IntoIterator<Item = T>,
        mut f: impl FnMut(&mut Xml, T),
    ) -> &mut Self {
        let _ = write!(self.buf, "<{name}>");
        for item in items {
            let _ = write!(self.buf, "<{member}>");
            f(self, item);
            let _ = write!(self.buf, "</{member}>");
        }
        let _ = write!(self.buf, "</{name}>");
        self
    }

    /// Closes the root element and returns the document.
    pub fn finish(mut self, root: &str) -> String {
        let _ = write!(self.buf, "</{root}>");
        self.buf
    }
}

/// Whether `s` holds anything [`escape`] would change.
fn needs_escape(s: &str) -> bool {
    s.bytes()
        .any(|b| matches!(b, b'<' | b'>' | b'&' | b'"' | b'\'' | b'\r') || b < 0x20 || b == 0xEF)
}

/// Whether XML 1.0 allows `c` in a document (Rust strings cannot hold surrogates).
pub fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// Text safe inside an element or an attribute value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            c if !allowed(c) => out.push(char::REPLACEMENT_CHARACTER),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_nested_escaped_lists() {
        let mut x = Xml::new("DescribeKeyPairsResponse", EC2_NS);
        x.elem("requestId", "r-1");
        x.items("keySet", ["a<b", "c"], |x, k| {
            x.elem("keyName", k);
        });
        x.items("tagSet", Vec::<&str>::new(), |_, _| {});
        let doc = x.finish("DescribeKeyPairsResponse");
        assert!(doc.contains("<keySet><item><keyName>a&lt;b</keyName></item><item><keyName>c</keyName></item></keySet>"));
        assert!(doc.contains("<tagSet></tagSet>"));
        assert!(doc.ends_with("</DescribeKeyPairsResponse>"));
    }

    #[test]
    fn forbidden_characters_never_reach_the_document() {
        let nasty = "a\u{1}b\u{0}c\u{1b}[0m\u{FFFE}\u{FFFF}\r\n\t<&>\u{7f}\u{10FFFF}";
        let mut x = Xml::new("R", EC2_NS);
        x.elem("v", nasty).text(nasty);
        let doc = x.finish("R");
        for c in doc.chars() {
            assert!(allowed(c), "{c:?} in {doc:?}");
        }
        assert!(
            doc.contains("a\u{FFFD}b\u{FFFD}c\u{FFFD}[0m\u{FFFD}\u{FFFD}&#13;\n\t&lt;&amp;&gt;")
        );
        let mut reader = quick_xml::Reader::from_str(&doc);
        loop {
            match reader.read_event() {
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(_) => {}
                Err(e) => panic!("{e}: {doc:?}"),
            }
        }
    }
}
