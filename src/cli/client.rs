//! The CLI's API client: finds the daemon's endpoint and credentials (data dir, overridden by the
//! usual `AWS_*` variables), signs each request with SigV4 like the aws CLI, and parses the XML
//! answer into a small element tree. API errors come back as one readable line. The lab has one
//! region, its daemon's: a client asked for another (`--region`, `AWS_REGION`,
//! `AWS_DEFAULT_REGION`) is refused before any call, rather than showing the same instances.

use std::io::Read;
use std::path::Path;

use crate::api::sigv4;
use crate::datadir::DataDir;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Setup(String),
    #[error("cannot reach the ec2lab daemon at {endpoint} ({reason}); is `ec2lab serve` running?")]
    Unreachable { endpoint: String, reason: String },
    #[error("{code}: {message}")]
    Api { code: String, message: String },
    #[error("unexpected answer from the daemon: {0}")]
    Protocol(String),
}

pub struct Client {
    endpoint: String,
    host: String,
    access_key: String,
    secret: String,
    region: String,
    agent: ureq::Agent,
}

impl Client {
    /// Reads `DIR/daemon.json` and `DIR/credentials.json`; `AWS_ENDPOINT_URL_EC2`,
    /// `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` override them.
    /// The region is `region` (`--region`), else `AWS_REGION`, else `AWS_DEFAULT_REGION`, else
    /// the daemon's; one that is not the daemon's is an error.
    pub fn new(data_dir: &Path, region: Option<&str>) -> Result<Client, CliError> {
        let dd = DataDir::new(data_dir);
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let info = dd.daemon_info().ok();
        let endpoint = env("AWS_ENDPOINT_URL_EC2")
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .or_else(|| info.as_ref().map(|i| i.endpoint.clone()))
            .ok_or_else(|| {
                CliError::Setup(format!(
                    "no ec2lab daemon has run with data dir {} (start one with `ec2lab serve`, or pass --data-dir)",
                    data_dir.display()
                ))
            })?;
        let (access_key, secret) = match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
            (Some(a), Some(s)) => (a, s),
            _ => {
                let c = dd.credentials().map_err(|e| {
                    CliError::Setup(format!("cannot read the lab credentials: {e}"))
                })?;
                (c.access_key_id, c.secret_access_key)
            }
        };
        let asked = region
            .map(|r| (r.to_string(), "--region"))
            .or_else(|| env("AWS_REGION").map(|r| (r, "AWS_REGION")))
            .or_else(|| env("AWS_DEFAULT_REGION").map(|r| (r, "AWS_DEFAULT_REGION")));
        let lab = info.as_ref().map(|i| i.region.as_str());
        let region = match (asked, lab) {
            (Some((r, from)), Some(lab)) if r != lab => {
                return Err(CliError::Setup(region_refusal(&r, from, lab)));
            }
            (Some((r, _)), _) => r,
            (None, Some(lab)) => lab.to_string(),
            (None, None) => "ap-northeast-2".to_string(),
        };
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let host = endpoint
            .strip_prefix("http://")
            .ok_or_else(|| CliError::Setup(format!("endpoint {endpoint} is not an http:// URL")))?
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(120)))
            .build()
            .new_agent();
        Ok(Client {
            endpoint,
            host,
            access_key,
            secret,
            region,
            agent,
        })
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Calls an EC2 action and returns the root element of the answer.
    pub fn call(&self, action: &str, params: &[(String, String)]) -> Result<Element, CliError> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("Action", action)
            .append_pair("Version", "2016-11-15");
        for (k, v) in params {
            form.append_pair(k, v);
        }
        let body = form.finish();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let headers = sigv4::sign(
            &self.host,
            body.as_bytes(),
            &self.access_key,
            &self.secret,
            &self.region,
            "ec2",
            &sigv4::format_amz_date(now),
        );
        let mut req = self.agent.post(format!("{}/", self.endpoint));
        for (k, v) in &headers {
            if k != "host" {
                req = req.header(k, v);
            }
        }
        let mut resp = req
            .send(body.as_bytes())
            .map_err(|e| CliError::Unreachable {
                endpoint: self.endpoint.clone(),
                reason: e.to_string(),
            })?;
        let status = resp.status().as_u16();
        let mut text = String::new();
        resp.body_mut()
            .as_reader()
            .read_to_string(&mut text)
            .map_err(|e| CliError::Protocol(format!("reading the answer: {e}")))?;
        let root = Element::parse(&text)?;
        if status >= 300 {
            let err = root.find("Errors").and_then(|e| e.find("Error"));
            return Err(CliError::Api {
                code: err
                    .map(|e| e.text_of("Code"))
                    .unwrap_or_else(|| format!("HTTP {status}")),
                message: err.map(|e| e.text_of("Message")).unwrap_or_default(),
            });
        }
        Ok(root)
    }
}

/// Why a region is refused: the lab serves one region, and which.
fn region_refusal(asked: &str, from: &str, lab: &str) -> String {
    format!(
        "region {asked} (from {from}) is not served here: this ec2lab daemon is one region, {lab} (use --region {lab}, or leave the region out)"
    )
}

/// A parsed XML element: name, text and children (enough for API answers).
#[derive(Debug, Clone, Default)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    pub fn parse(xml: &str) -> Result<Element, CliError> {
        use quick_xml::events::Event;
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut stack: Vec<Element> = vec![Element::default()];
        loop {
            let ev = reader
                .read_event()
                .map_err(|e| CliError::Protocol(format!("bad XML: {e}")))?;
            match ev {
                Event::Start(s) => stack.push(Element {
                    name: s.local_name().as_ref().to_string(),
                    ..Default::default()
                }),
                Event::Empty(s) => {
                    let e = Element {
                        name: s.local_name().as_ref().to_string(),
                        ..Default::default()
                    };
                    stack.last_mut().expect("root").children.push(e);
                }
                Event::End(_) => {
                    let done = stack.pop().expect("balanced");
                    stack
                        .last_mut()
                        .ok_or_else(|| CliError::Protocol("unbalanced XML".into()))?
                        .children
                        .push(done);
                }
                Event::Text(t) => {
                    stack.last_mut().expect("root").text.push_str(&t);
                }
                Event::CData(t) => {
                    stack.last_mut().expect("root").text.push_str(&t);
                }
                Event::GeneralRef(r) => {
                    let name = r.to_string();
                    let c = match name.as_str() {
                        "lt" => "<".to_string(),
                        "gt" => ">".to_string(),
                        "amp" => "&".to_string(),
                        "quot" => "\"".to_string(),
                        "apos" => "'".to_string(),
                        n => n
                            .strip_prefix("#x")
                            .and_then(|h| u32::from_str_radix(h, 16).ok())
                            .or_else(|| n.strip_prefix('#').and_then(|d| d.parse().ok()))
                            .and_then(char::from_u32)
                            .map(String::from)
                            .ok_or_else(|| {
                                CliError::Protocol(format!("unknown XML entity &{n};"))
                            })?,
                    };
                    stack.last_mut().expect("root").text.push_str(&c);
                }
                Event::Eof => break,
                _ => {}
            }
        }
        let mut top = stack
            .pop()
            .ok_or_else(|| CliError::Protocol("empty XML".into()))?;
        if !stack.is_empty() {
            return Err(CliError::Protocol("unbalanced XML".into()));
        }
        top.children
            .pop()
            .ok_or_else(|| CliError::Protocol("empty XML document".into()))
    }

    pub fn find(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The text of a direct child, or "" when it is absent.
    pub fn text_of(&self, name: &str) -> String {
        self.find(name).map(|c| c.text.clone()).unwrap_or_default()
    }

    /// The `<item>` entries of a list child (`<keySet><item>…`).
    pub fn items(&self, name: &str) -> Vec<&Element> {
        self.find(name)
            .map(|l| l.children.iter().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_answers_with_entities() {
        let x = "<?xml version=\"1.0\"?>\n<R xmlns=\"x\"><requestId>1</requestId><keyMaterial>a&lt;b&#10;c</keyMaterial><keySet><item><keyName>k</keyName></item><item/></keySet></R>";
        let e = Element::parse(x).unwrap();
        assert_eq!(e.name, "R");
        assert_eq!(e.text_of("keyMaterial"), "a<b\nc");
        assert_eq!(e.items("keySet").len(), 2);
        assert_eq!(e.items("keySet")[0].text_of("keyName"), "k");
    }
}
