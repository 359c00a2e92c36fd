//! A strict well-formedness check for the daemon's XML answers: quick-xml's reader for the
//! structure (one root, matching end tags), plus what the reader lets through — characters XML
//! 1.0 forbids, undefined entities and character references to forbidden characters.

use quick_xml::events::Event;

/// Whether XML 1.0 allows `c` in a document.
fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// `Ok` when `body` is one well-formed XML 1.0 document; else what is wrong with it.
pub fn check(body: &str) -> Result<(), String> {
    if let Some(c) = body.chars().find(|&c| !allowed(c)) {
        return Err(format!("character {c:?} is not allowed in XML 1.0"));
    }
    let mut r = quick_xml::Reader::from_str(body);
    let (mut depth, mut roots) = (0usize, 0usize);
    loop {
        match r.read_event().map_err(|e| e.to_string())? {
            Event::Eof => break,
            Event::Start(_) => {
                roots += usize::from(depth == 0);
                depth += 1;
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Empty(_) => roots += usize::from(depth == 0),
            Event::GeneralRef(e) => match e.resolve_char_ref().map_err(|e| e.to_string())? {
                Some(c) if !allowed(c) => return Err(format!("&#{};", c as u32)),
                Some(_) => {}
                None if ["lt", "gt", "amp", "quot", "apos"].contains(&&*e) => {}
                None => return Err(format!("undefined entity &{};", &*e)),
            },
            Event::Text(t) if depth == 0 && !t.as_ref().trim().is_empty() => {
                return Err("text outside the root element".into());
            }
            _ => {}
        }
    }
    if depth != 0 || roots != 1 {
        return Err(format!("{roots} root elements, {depth} left open"));
    }
    Ok(())
}
