//! A small YAML document tree for `#cloud-config`, built from `yaml-rust2` parser events.
//!
//! cloud-init reads its config with PyYAML (YAML 1.1), whose plain scalars differ from YAML 1.2
//! (`0644` is octal, `yes`/`on` are booleans). So this loader keeps every scalar as text plus its
//! style, and the typed accessors here apply the YAML 1.1 rules cloud-init users rely on.
//! Anchors and aliases are expanded; `!!binary` scalars decode to bytes.

use base64::Engine;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One YAML node.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Keys are the scalar text of the key (non-scalar keys are dropped).
    Map(Vec<(String, Node)>),
}

/// A scalar with the facts needed to type it later.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub text: String,
    /// Plain (unquoted, not a block scalar): subject to null/bool/int resolution.
    pub plain: bool,
    /// Tagged `!!binary`: `text` is base64.
    pub binary: bool,
}

/// Parses one YAML document. An empty document yields `None`.
pub fn parse(text: &str) -> Result<Option<Node>, String> {
    let mut builder = Builder::default();
    Parser::new_from_str(text)
        .load(&mut builder, false)
        .map_err(|e| e.to_string())?;
    Ok(builder.root)
}

#[derive(Default)]
struct Builder {
    stack: Vec<(Frame, usize)>,
    anchors: std::collections::HashMap<usize, Node>,
    root: Option<Node>,
}

enum Frame {
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>, Option<String>),
}

impl Builder {
    fn push_node(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some((Frame::Seq(items), _)) => items.push(node),
            Some((Frame::Map(entries, pending), _)) => match pending.take() {
                None => *pending = Some(key_text(&node)),
                Some(key) => entries.push((key, node)),
            },
        }
    }
}

fn key_text(node: &Node) -> String {
    match node {
        Node::Scalar(s) => s.text.clone(),
        _ => String::new(),
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, _mark: Marker) {
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let tag_suffix = tag.as_ref().map(|t| t.suffix.as_str()).unwrap_or("");
                let scalar = Scalar {
                    plain: style == TScalarStyle::Plain && tag.is_none(),
                    binary: tag_suffix == "binary",
                    text,
                };
                self.push_node(Node::Scalar(scalar), anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push((Frame::Seq(Vec::new()), anchor)),
            Event::MappingStart(anchor, _) => {
                self.stack.push((Frame::Map(Vec::new(), None), anchor))
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((frame, anchor)) = self.stack.pop() {
                    let node = match frame {
                        Frame::Seq(items) => Node::Seq(items),
                        Frame::Map(entries, _) => Node::Map(entries),
                    };
                    self.push_node(node, anchor);
                }
            }
            Event::Alias(id) => {
                let node = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .unwrap_or(Node::Scalar(Scalar {
                        text: String::new(),
                        plain: true,
                        binary: false,
                    }));
                self.push_node(node, 0);
            }
            _ => {}
        }
    }
}

impl Node {
    /// Looks up a key of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// YAML 1.1 null: `~`, `null`, or an empty plain scalar.
    pub fn is_null(&self) -> bool {
        matches!(self, Node::Scalar(s) if s.plain && matches!(s.text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The scalar's text (numbers and booleans as written); `None` for null and collections.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Scalar(s) if !self.is_null() => Some(s.text.as_str()),
            _ => None,
        }
    }

    /// The scalar's bytes; `!!binary` scalars are base64-decoded.
    pub fn as_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Node::Scalar(s) if s.binary => {
                let compact: String = s.text.split_whitespace().collect();
                base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .ok()
            }
            _ => self.as_str().map(|s| s.as_bytes().to_vec()),
        }
    }

    /// A boolean the way cloud-init's `get_cfg_option_bool` reads one (strings count too).
    pub fn as_bool(&self) -> Option<bool> {
        let text = self.as_str()?.trim().to_ascii_lowercase();
        match text.as_str() {
            "true" | "yes" | "on" | "1" | "y" => Some(true),
            "false" | "no" | "off" | "0" | "n" => Some(false),
            _ => None,
        }
    }

    /// An integer with YAML 1.1 rules for plain scalars (`0o17`, `017` octal, `0x1f` hex).
    pub fn as_int(&self) -> Option<i64> {
        let Node::Scalar(s) = self else { return None };
        let t = s.text.trim().replace('_', "");
        let (neg, digits) = match t.strip_prefix('-') {
            Some(rest) => (true, rest.to_string()),
            None => (false, t.trim_start_matches('+').to_string()),
        };
        let value = if !s.plain {
            digits.parse::<i64>().ok()?
        } else if let Some(hex) = digits.strip_prefix("0x") {
            i64::from_str_radix(hex, 16).ok()?
        } else if let Some(oct) = digits.strip_prefix("0o") {
            i64::from_str_radix(oct, 8).ok()?
        } else if digits.len() > 1 && digits.starts_with('0') {
            i64::from_str_radix(&digits[1..], 8).ok()?
        } else {
            digits.parse::<i64>().ok()?
        };
        Some(if neg { -value } else { value })
    }

    /// A list of strings: a sequence of scalars, or one scalar split on commas (cloud-init
    /// accepts both for `groups` and blacklists).
    pub fn as_str_list(&self) -> Vec<String> {
        match self {
            Node::Seq(items) => items
                .iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect(),
            Node::Scalar(_) => self
                .as_str()
                .map(|s| {
                    s.split(',')
                        .map(|p| p.trim().to_string())
                        .filter(|p| !p.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            Node::Map(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_follow_yaml_1_1() {
        let doc =
            parse("a: 0644\nb: '0644'\nc: 0o600\nd: yes\ne: ~\nf: 420\ng: !!binary aGVsbG8=\n")
                .unwrap()
                .unwrap();
        assert_eq!(doc.get("a").unwrap().as_int(), Some(0o644));
        assert_eq!(doc.get("b").unwrap().as_str(), Some("0644"));
        assert_eq!(doc.get("c").unwrap().as_int(), Some(0o600));
        assert_eq!(doc.get("d").unwrap().as_bool(), Some(true));
        assert!(doc.get("e").unwrap().is_null());
        assert_eq!(doc.get("f").unwrap().as_int(), Some(420));
        assert_eq!(doc.get("g").unwrap().as_bytes().unwrap(), b"hello");
    }

    #[test]
    fn nested_collections_and_aliases() {
        let doc = parse("x: &k [1, [a, b]]\ny: *k\nz: {m: n}\n")
            .unwrap()
            .unwrap();
        assert_eq!(doc.get("x"), doc.get("y"));
        let Node::Seq(items) = doc.get("x").unwrap() else {
            panic!("not a seq")
        };
        assert_eq!(items[1].as_str_list(), vec!["a", "b"]);
        assert_eq!(doc.get("z").unwrap().get("m").unwrap().as_str(), Some("n"));
        assert_eq!(parse("").unwrap(), None);
        assert!(parse("a: [").is_err());
    }
}
