//! Turns raw user data into typed parts, the way cloud-init's user-data processor does.
//!
//! Order per payload: gunzip if it starts with the gzip magic (at any nesting level), then pick
//! the type from the MIME `Content-Type` or from the first line (`#!`, `#cloud-config`,
//! `#include`, `#cloud-boothook`, `#cloud-config-archive`, a MIME document), then expand
//! containers (MIME multipart/mixed, `#include` URL lists, `#cloud-config-archive`) recursively.
//! Leaves are [`Part`]s named like cloud-init names them (`part-001`, … or the MIME filename).
//! Nothing here is fatal: problems become warnings and processing goes on.

use std::io::Read;

use base64::Engine;
use flate2::read::GzDecoder;

use crate::userdata::yaml;

/// Largest payload accepted after gunzip (a gzip bomb guard).
const MAX_EXPANDED: u64 = 16 * 1024 * 1024;
/// Includes and MIME documents nest at most this deep.
const MAX_DEPTH: usize = 8;

/// What a leaf part is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartKind {
    /// `#cloud-config` YAML.
    CloudConfig,
    /// A user script, once per instance (`#!`, `text/x-shellscript`).
    Script,
    /// `#cloud-boothook`: every boot, early, with `INSTANCE_ID` set.
    BootHook,
    /// `text/x-shellscript-per-boot`.
    ScriptPerBoot,
    /// `text/x-shellscript-per-instance`.
    ScriptPerInstance,
    /// `text/x-shellscript-per-once`.
    ScriptPerOnce,
}

/// One decoded leaf of the user data.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub kind: PartKind,
    /// A safe file name (no `/`), e.g. `part-001` or the MIME part's filename.
    pub filename: String,
    pub body: Vec<u8>,
}

/// The result of decoding: the parts in order and what went wrong on the way.
#[derive(Debug, Default)]
pub struct Decoded {
    pub parts: Vec<Part>,
    pub warnings: Vec<String>,
}

/// Fetches an `#include` URL; the error is a short human-readable reason.
pub type Fetch<'a> = &'a dyn Fn(&str) -> Result<Vec<u8>, String>;

/// Decodes user data into parts. `fetch` serves `#include` URLs.
pub fn decode(data: &[u8], fetch: Fetch<'_>) -> Decoded {
    let mut state = State {
        fetch,
        out: Decoded::default(),
        counter: 0,
    };
    state.payload(data, None, None, 0);
    state.out
}

struct State<'a> {
    fetch: Fetch<'a>,
    out: Decoded,
    counter: usize,
}

impl State<'_> {
    fn warn(&mut self, msg: String) {
        self.out.warnings.push(msg);
    }

    /// Processes one payload whose MIME type may be known.
    fn payload(&mut self, data: &[u8], ctype: Option<&str>, filename: Option<&str>, depth: usize) {
        if depth > MAX_DEPTH {
            self.warn(format!(
                "user data nested deeper than {MAX_DEPTH} levels, ignored"
            ));
            return;
        }
        if data.starts_with(&[0x1f, 0x8b]) {
            match gunzip(data) {
                Ok(plain) => return self.payload(&plain, ctype, filename, depth + 1),
                Err(e) => return self.warn(format!("cannot gunzip user data: {e}")),
            }
        }
        let ctype = ctype
            .map(|c| c.to_ascii_lowercase())
            .filter(|c| !matches!(c.as_str(), "text/plain" | "application/octet-stream"))
            .or_else(|| sniff(data).map(str::to_string));
        let Some(ctype) = ctype else {
            if !data.iter().all(u8::is_ascii_whitespace) {
                let first = first_line(data);
                self.warn(format!(
                    "unhandled user data starting with {first:?}, ignored"
                ));
            }
            return;
        };
        match ctype.as_str() {
            "multipart/mixed" | "message/rfc822" | "multipart/alternative" | "mime" => {
                self.mime(data, depth)
            }
            "text/x-include-url" | "text/x-include-once-url" => self.include(data, depth),
            "text/cloud-config-archive" => self.archive(data, depth),
            "application/x-gzip" | "application/gzip" => self.warn(format!(
                "part {:?} is not gzip data, ignored",
                filename.unwrap_or("")
            )),
            _ => match leaf_kind(&ctype) {
                Some(kind) => self.leaf(kind, data, filename),
                None => self.warn(format!("unsupported user data type {ctype:?}, ignored")),
            },
        }
    }

    fn leaf(&mut self, kind: PartKind, data: &[u8], filename: Option<&str>) {
        self.counter += 1;
        let filename = filename
            .and_then(|f| f.rsplit('/').next())
            .filter(|f| !f.is_empty() && *f != "." && *f != "..")
            .map(str::to_string)
            .unwrap_or_else(|| format!("part-{:03}", self.counter));
        self.out.parts.push(Part {
            kind,
            filename,
            body: data.to_vec(),
        });
    }

    fn include(&mut self, data: &[u8], depth: usize) {
        let text = String::from_utf8_lossy(data);
        for line in text.lines() {
            let line = line.trim();
            let url = if let Some(rest) = line.strip_prefix("#include-once") {
                rest.trim()
            } else if let Some(rest) = line.strip_prefix("#include") {
                rest.trim()
            } else if line.starts_with('#') {
                continue;
            } else {
                line
            };
            if url.is_empty() {
                continue;
            }
            match (self.fetch)(url) {
                Ok(body) => self.payload(&body, None, None, depth + 1),
                Err(e) => {
                    self.warn(format!(
                        "#include: cannot fetch {url}: {e}; skipping the remaining urls"
                    ));
                    return;
                }
            }
        }
    }

    fn archive(&mut self, data: &[u8], depth: usize) {
        let text = String::from_utf8_lossy(data);
        let items = match yaml::parse(&text) {
            Ok(Some(yaml::Node::Seq(items))) => items,
            Ok(_) => return self.warn("#cloud-config-archive is not a list, ignored".into()),
            Err(e) => return self.warn(format!("#cloud-config-archive is not valid yaml: {e}")),
        };
        for item in items {
            if let Some(content) = item.as_bytes() {
                self.payload(&content, None, None, depth + 1);
            } else if let Some(content) = item.get("content").and_then(|c| c.as_bytes()) {
                let ctype = item.get("type").and_then(|t| t.as_str());
                let filename = item.get("filename").and_then(|t| t.as_str());
                self.payload(&content, ctype, filename, depth + 1);
            }
        }
    }

    fn mime(&mut self, data: &[u8], depth: usize) {
        let (headers, body) = split_message(data);
        if headers.is_empty() {
            return self.warn("user data mentions mime-version but is not a mime document".into());
        }
        let ctype = header(&headers, "content-type").unwrap_or_default();
        let (mtype, params) = parse_content_type(&ctype);
        let body = match decode_transfer(&headers, body) {
            Ok(b) => b,
            Err(e) => return self.warn(e),
        };
        if mtype.starts_with("multipart/") {
            let Some(boundary) = params.get("boundary") else {
                return self.warn("multipart user data without a boundary, ignored".into());
            };
            for part in split_multipart(&body, boundary) {
                let (part_headers, part_body) = split_message(part);
                let ptype = header(&part_headers, "content-type").unwrap_or_default();
                let (ptype, _) = parse_content_type(&ptype);
                let filename = filename_of(&part_headers);
                if ptype.starts_with("multipart/") {
                    self.mime(part, depth + 1);
                    continue;
                }
                match decode_transfer(&part_headers, part_body) {
                    Ok(b) => {
                        let hint = (!ptype.is_empty()).then_some(ptype.as_str());
                        self.payload(&b, hint, filename.as_deref(), depth + 1)
                    }
                    Err(e) => self.warn(e),
                }
            }
        } else {
            let hint = (!mtype.is_empty()).then_some(mtype.as_str());
            let filename = filename_of(&headers);
            self.payload(&body, hint, filename.as_deref(), depth + 1);
        }
    }
}

/// Decompresses gzip data, bounded by [`MAX_EXPANDED`].
pub fn gunzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    GzDecoder::new(data)
        .take(MAX_EXPANDED + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 > MAX_EXPANDED {
        return Err(std::io::Error::other(format!(
            "expands past {MAX_EXPANDED} bytes"
        )));
    }
    Ok(out)
}

fn first_line(data: &[u8]) -> String {
    let line = data.split(|b| *b == b'\n').next().unwrap_or_default();
    String::from_utf8_lossy(&line[..line.len().min(40)])
        .trim_end()
        .to_string()
}

/// The type cloud-init guesses from the start of a payload.
fn sniff(data: &[u8]) -> Option<&'static str> {
    let head = &data[..data.len().min(4096)];
    let lower = String::from_utf8_lossy(head).to_ascii_lowercase();
    let start = lower.trim_start_matches('\u{feff}');
    let table: [(&str, &str); 7] = [
        ("#include-once", "text/x-include-once-url"),
        ("#include", "text/x-include-url"),
        ("#cloud-config-archive", "text/cloud-config-archive"),
        ("#cloud-config", "text/cloud-config"),
        ("#cloud-boothook", "text/cloud-boothook"),
        ("#part-handler", "text/part-handler"),
        ("## template: jinja", "text/jinja2"),
    ];
    if let Some((_, t)) = table.iter().find(|(p, _)| start.starts_with(p)) {
        return Some(t);
    }
    if start.starts_with("#!") {
        return Some("text/x-shellscript");
    }
    if lower.contains("mime-version:") || start.starts_with("content-type:") {
        return Some("mime");
    }
    None
}

fn leaf_kind(ctype: &str) -> Option<PartKind> {
    Some(match ctype {
        "text/cloud-config" | "text/cloud-config-jsonp" => PartKind::CloudConfig,
        "text/x-shellscript" => PartKind::Script,
        "text/cloud-boothook" => PartKind::BootHook,
        "text/x-shellscript-per-boot" => PartKind::ScriptPerBoot,
        "text/x-shellscript-per-instance" => PartKind::ScriptPerInstance,
        "text/x-shellscript-per-once" => PartKind::ScriptPerOnce,
        _ => return None,
    })
}

/// Splits a MIME entity into unfolded headers and its body.
fn split_message(data: &[u8]) -> (Vec<(String, String)>, &[u8]) {
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let end = data[pos..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(data.len(), |i| pos + i);
        let line = String::from_utf8_lossy(&data[pos..end]);
        let line = line.trim_end_matches('\r');
        let next = (end + 1).min(data.len());
        if line.is_empty() {
            return (headers, &data[next..]);
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = headers.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        } else {
            // Not a header: there are no headers, the whole thing is body.
            return (Vec::new(), data);
        }
        pos = next;
    }
    (headers, &data[data.len()..])
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// `type/subtype; a=b; c="d"` → lowercase type and parameters.
fn parse_content_type(value: &str) -> (String, std::collections::HashMap<String, String>) {
    let mut params = std::collections::HashMap::new();
    let mut pieces = split_params(value).into_iter();
    let mtype = pieces
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    for p in pieces {
        if let Some((k, v)) = p.split_once('=') {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            params.insert(k.trim().to_ascii_lowercase(), v.to_string());
        }
    }
    (mtype, params)
}

fn split_params(value: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                out.last_mut().unwrap().push(c);
            }
            ';' if !quoted => out.push(String::new()),
            _ => out.last_mut().unwrap().push(c),
        }
    }
    out
}

fn filename_of(headers: &[(String, String)]) -> Option<String> {
    let disposition = header(headers, "content-disposition")?;
    let (_, params) = parse_content_type(&disposition);
    params.get("filename").cloned()
}

fn decode_transfer(headers: &[(String, String)], body: &[u8]) -> Result<Vec<u8>, String> {
    let cte = header(headers, "content-transfer-encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    match cte.as_str() {
        "base64" => {
            let compact: Vec<u8> = body
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(&compact)
                .map_err(|e| format!("invalid base64 in a mime part: {e}"))
        }
        "quoted-printable" => Ok(quoted_printable(body)),
        _ => Ok(body.to_vec()),
    }
}

fn quoted_printable(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'=' {
            let rest = &body[i + 1..];
            if rest.starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if rest.starts_with(b"\n") {
                i += 2;
                continue;
            }
            if rest.len() >= 2
                && let Ok(b) = u8::from_str_radix(&String::from_utf8_lossy(&rest[..2]), 16)
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(body[i]);
        i += 1;
    }
    out
}

/// The body parts between `--boundary` lines (the line break before a delimiter belongs to it).
fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Vec<&'a [u8]> {
    let delim = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut current: Option<usize> = None;
    let mut pos = 0;
    while pos <= body.len() {
        let end = body[pos..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(body.len(), |i| pos + i);
        let line = &body[pos..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(delim.as_bytes()) {
            let rest = String::from_utf8_lossy(rest);
            let closing = rest.starts_with("--");
            if closing || rest.trim().is_empty() {
                if let Some(start) = current.take() {
                    let mut stop = pos.saturating_sub(1).max(start);
                    if stop > start && body[stop - 1] == b'\r' {
                        stop -= 1;
                    }
                    parts.push(&body[start..stop]);
                }
                if closing {
                    break;
                }
                current = Some((end + 1).min(body.len()));
            }
        }
        if end >= body.len() {
            break;
        }
        pos = end + 1;
    }
    parts
}
