//! `MaxResults` / `NextToken` for the Describe actions that page, as EC2 does: the caller asks
//! for at most `MaxResults` items (each action has its own range), the response carries a
//! `nextToken` while more remain, and the token is opaque to the client (here: the offset into
//! the result, in base64, bound to the action so a token of one action is refused by another).
//!
//! Order of steps: `Page::read` decodes and checks both parameters before the handler acts;
//! `Page::take` cuts the sorted result and returns the token of the rest.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::api::Params;
use crate::cloud::AwsError;

/// One request's paging: `None` limit means "everything".
#[derive(Debug, Clone)]
pub struct Page {
    action: &'static str,
    limit: Option<usize>,
    offset: usize,
}

impl Page {
    /// Reads `MaxResults` (in `min..=max`, EC2's range for the action) and `NextToken`.
    pub fn read(
        p: &Params,
        action: &'static str,
        min: usize,
        max: usize,
    ) -> Result<Page, AwsError> {
        let limit = match p.int::<i64>("MaxResults")? {
            None => None,
            Some(n) if n < min as i64 || n > max as i64 => {
                return Err(AwsError::new(
                    "InvalidParameterValue",
                    format!(
                        "Value ( {n} ) for parameter maxResults is invalid. \
                         Expecting a value between {min} and {max}."
                    ),
                ));
            }
            Some(n) => Some(n as usize),
        };
        let offset = match p.get("NextToken") {
            None | Some("") => 0,
            Some(token) => decode(action, token).ok_or_else(|| {
                AwsError::new(
                    "InvalidNextToken",
                    format!("The token '{token}' is invalid."),
                )
            })?,
        };
        Ok(Page {
            action,
            limit,
            offset,
        })
    }

    /// True when the caller asked for a page (EC2 refuses some combinations with explicit ids).
    pub fn is_paged(&self) -> bool {
        self.limit.is_some() || self.offset > 0
    }

    /// This page of `items` (already in their final order) and the token of the next one.
    pub fn take<T>(&self, items: Vec<T>) -> (Vec<T>, Option<String>) {
        let total = items.len();
        let rest = items.into_iter().skip(self.offset);
        match self.limit {
            None => (rest.collect(), None),
            Some(n) => {
                let page: Vec<T> = rest.take(n).collect();
                let next = self.offset + page.len();
                let token = (next < total).then(|| encode(self.action, next));
                (page, token)
            }
        }
    }
}

fn encode(action: &str, offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("{action}:{offset}"))
}

fn decode(action: &str, token: &str) -> Option<usize> {
    let raw = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (a, n) = text.split_once(':')?;
    (a == action).then(|| n.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_walk_the_whole_result_once() {
        let items: Vec<u32> = (0..12).collect();
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let form = match &token {
                Some(t) => format!("MaxResults=5&NextToken={t}"),
                None => "MaxResults=5".to_string(),
            };
            let p = Params::parse(form.as_bytes());
            let page = Page::read(&p, "DescribeX", 5, 1000).unwrap();
            let (got, next) = page.take(items.clone());
            assert!(got.len() <= 5);
            seen.extend(got);
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen, items);
    }

    #[test]
    fn bad_limits_and_foreign_tokens_are_refused() {
        let p = Params::parse(b"MaxResults=2");
        let e = Page::read(&p, "DescribeX", 5, 1000).unwrap_err();
        assert_eq!(e.code, "InvalidParameterValue");
        let other = encode("DescribeY", 3);
        let p = Params::parse(format!("NextToken={other}").as_bytes());
        assert_eq!(
            Page::read(&p, "DescribeX", 5, 1000).unwrap_err().code,
            "InvalidNextToken"
        );
        let p = Params::parse(b"");
        let page = Page::read(&p, "DescribeX", 5, 1000).unwrap();
        assert!(!page.is_paged());
        assert_eq!(page.take(vec![1, 2, 3]), (vec![1, 2, 3], None));
    }
}
