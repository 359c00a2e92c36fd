//! User data formats: scripts, `#include`, MIME multipart, gzip, boothooks, archives.

use super::{Inst, b64, gzip, http_server};
use crate::userdata::decode::{PartKind, decode};

const SCRIPT: &str = "#!/bin/sh\necho hello-from-script\necho ran >> tmp/script-ran\n";

fn no_fetch(url: &str) -> Result<Vec<u8>, String> {
    Err(format!("no fetch in this test: {url}"))
}

/// A MIME multipart/mixed document; parts are (headers, body).
fn mime(parts: &[(&str, &str)], crlf: bool) -> String {
    let nl = if crlf { "\r\n" } else { "\n" };
    let mut doc = format!(
        "Content-Type: multipart/mixed; boundary=\"==BOUNDARY==\"{nl}MIME-Version: 1.0{nl}{nl}preamble{nl}"
    );
    for (headers, body) in parts {
        doc.push_str(&format!(
            "--==BOUNDARY=={nl}{}{nl}{nl}{body}{nl}",
            headers.replace('\n', nl)
        ));
    }
    doc.push_str(&format!("--==BOUNDARY==--{nl}epilogue{nl}"));
    doc
}

#[test]
fn shell_script_runs_once_per_instance() {
    let inst = Inst::new(Some(SCRIPT.as_bytes()));
    let console = inst.boot();
    assert!(console.contains("hello-from-script"), "{console}");
    assert!(inst.output_log().contains("hello-from-script"));
    assert_eq!(inst.read("tmp/script-ran"), "ran\n");
    let script = "var/lib/cloud/instance/scripts/part-001";
    assert_eq!(inst.read(script), SCRIPT);
    assert_eq!(inst.mode(script), 0o700);
    assert_eq!(
        inst.read("var/lib/cloud/instances/i-0123456789abcdef0/user-data.txt"),
        SCRIPT
    );
    assert_eq!(
        inst.mode("var/lib/cloud/instances/i-0123456789abcdef0/user-data.txt"),
        0o600
    );
    // A reboot or stop/start does not run it again.
    let second = inst.boot();
    assert!(!second.contains("hello-from-script"));
    assert_eq!(inst.read("tmp/script-ran"), "ran\n");
}

#[test]
fn failing_script_is_logged_and_others_still_run() {
    let doc = mime(
        &[
            (
                "Content-Type: text/x-shellscript",
                "#!/bin/sh\necho first\nexit 3",
            ),
            (
                "Content-Type: text/x-shellscript",
                "#!/bin/sh\necho second-ran",
            ),
        ],
        false,
    );
    let inst = Inst::new(Some(doc.as_bytes()));
    let console = inst.boot();
    assert!(
        console.contains("/var/lib/cloud/instance/scripts/part-001 failed with exit status 3"),
        "{console}"
    );
    assert!(console.contains("second-ran"));
    assert!(
        inst.read("var/log/cloud-init.log")
            .contains("failed with exit status 3")
    );
}

#[test]
fn include_file_and_http() {
    let url = http_server(
        vec![(
            "/b.cfg",
            200,
            b"#cloud-config\nruncmd:\n - echo from-http-runcmd\n".to_vec(),
        )],
        4,
    );
    let ud = format!("#include\n# a comment\nfile:///srv/a.sh\n\n{url}/b.cfg\n");
    let inst = Inst::new(Some(ud.as_bytes()));
    std::fs::create_dir_all(inst.root().join("srv")).unwrap();
    std::fs::write(
        inst.root().join("srv/a.sh"),
        "#!/bin/sh\necho from-file-include\n",
    )
    .unwrap();
    let console = inst.boot();
    assert!(console.contains("from-file-include"), "{console}");
    assert!(console.contains("from-http-runcmd"), "{console}");
}

#[test]
fn include_failure_is_logged_and_stops_processing() {
    let url = http_server(
        vec![("/ok.sh", 200, b"#!/bin/sh\necho should-not-run\n".to_vec())],
        4,
    );
    let ud = format!("#include\n{url}/missing\n{url}/ok.sh\n");
    let inst = Inst::new(Some(ud.as_bytes()));
    let console = inst.boot();
    assert!(
        console.contains(&format!("cannot fetch {url}/missing")),
        "{console}"
    );
    assert!(!console.contains("should-not-run"));
    assert!(console.contains("finished at"), "boot went on: {console}");

    let unreachable = Inst::new(Some(b"#include\nhttp://127.0.0.1:1/x\nfile:///nope\n"));
    let console = unreachable.boot();
    assert!(
        console.contains("cannot fetch http://127.0.0.1:1/x"),
        "{console}"
    );
    assert!(!console.contains("file:///nope"));
}

#[test]
fn mime_multipart_with_base64_boothook_and_frequencies() {
    let doc = mime(
        &[
            (
                "Content-Type: text/cloud-config; charset=\"us-ascii\"",
                "runcmd:\n - echo mime-runcmd",
            ),
            (
                "Content-Type: text/x-shellscript\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"setup.sh\"",
                &b64(b"#!/bin/sh\necho base64-part-ran\n"),
            ),
            (
                "Content-Type: text/x-shellscript-per-boot",
                "#!/bin/sh\necho boot >> tmp/per-boot",
            ),
            (
                "Content-Type: text/x-shellscript-per-instance",
                "#!/bin/sh\necho inst >> tmp/per-instance",
            ),
            (
                "Content-Type: text/x-shellscript-per-once",
                "#!/bin/sh\necho once >> tmp/per-once",
            ),
            (
                "Content-Type: text/cloud-boothook",
                "#cloud-boothook\n#!/bin/sh\necho \"$INSTANCE_ID\" >> tmp/boothook",
            ),
            (
                "Content-Type: text/plain",
                "#!/bin/sh\necho sniffed-plain-part",
            ),
        ],
        true,
    );
    let inst = Inst::new(Some(doc.as_bytes()));
    let console = inst.boot();
    for needle in ["mime-runcmd", "base64-part-ran", "sniffed-plain-part"] {
        assert!(console.contains(needle), "{needle} missing: {console}");
    }
    assert!(inst.exists("var/lib/cloud/instance/scripts/setup.sh"));
    assert!(inst.exists("var/lib/cloud/scripts/per-boot/part-003"));
    assert_eq!(inst.read("tmp/boothook"), "i-0123456789abcdef0\n");
    inst.boot();
    assert_eq!(inst.read("tmp/per-boot"), "boot\nboot\n");
    assert_eq!(inst.read("tmp/per-instance"), "inst\n");
    assert_eq!(inst.read("tmp/per-once"), "once\n");
    assert_eq!(
        inst.read("tmp/boothook"),
        "i-0123456789abcdef0\ni-0123456789abcdef0\n"
    );
}

#[test]
fn gzip_at_every_level() {
    // A gzipped script.
    let inst = Inst::new(Some(&gzip(b"#!/bin/sh\necho gz-script-ran\n")));
    assert!(inst.boot().contains("gz-script-ran"));
    // A gzipped MIME document whose part is itself gzip, base64-encoded.
    let inner = b64(&gzip(b"#cloud-config\nruncmd:\n - echo gz-part-ran\n"));
    let doc = mime(
        &[(
            "Content-Type: text/cloud-config\nContent-Transfer-Encoding: base64",
            &inner,
        )],
        false,
    );
    let inst = Inst::new(Some(&gzip(doc.as_bytes())));
    let console = inst.boot();
    assert!(console.contains("gz-part-ran"), "{console}");
    // Gzip inside gzip.
    let inst = Inst::new(Some(&gzip(&gzip(b"#!/bin/sh\necho double-gz\n"))));
    assert!(inst.boot().contains("double-gz"));
}

#[test]
fn cloud_boothook_format_runs_every_boot() {
    let inst = Inst::new(Some(
        b"#cloud-boothook\n#!/bin/sh\necho \"hook $INSTANCE_ID\" >> tmp/hook\n",
    ));
    inst.boot();
    inst.boot();
    assert_eq!(
        inst.read("tmp/hook"),
        "hook i-0123456789abcdef0\nhook i-0123456789abcdef0\n"
    );
    // The header line is stripped from the stored hook.
    assert!(
        inst.read("var/lib/cloud/instance/boothooks/part-001")
            .starts_with("#!/bin/sh")
    );
}

#[test]
fn cloud_config_archive() {
    let ud = "#cloud-config-archive\n- type: text/x-shellscript\n  content: |\n    #!/bin/sh\n    echo archive-script\n- |\n  #cloud-config\n  runcmd: [echo archive-config]\n";
    let decoded = decode(ud.as_bytes(), &no_fetch);
    assert!(decoded.warnings.is_empty(), "{:?}", decoded.warnings);
    let kinds: Vec<PartKind> = decoded.parts.iter().map(|p| p.kind).collect();
    assert_eq!(kinds, vec![PartKind::Script, PartKind::CloudConfig]);
}

#[test]
fn decode_edge_cases() {
    let d = decode(b"just some text\n", &no_fetch);
    assert!(d.parts.is_empty());
    assert!(
        d.warnings[0].contains("unhandled user data"),
        "{:?}",
        d.warnings
    );
    assert!(decode(b"", &no_fetch).warnings.is_empty());
    assert!(
        decode(b"## template: jinja\n#cloud-config\n", &no_fetch).warnings[0]
            .contains("unsupported")
    );
    let d = decode(b"\x1f\x8bnot gzip", &no_fetch);
    assert!(d.warnings[0].contains("gunzip"), "{:?}", d.warnings);
    // An include loop ends at the depth limit instead of recursing forever.
    let looping = |_: &str| Ok(b"#include\nhttp://x/loop\n".to_vec());
    let d = decode(b"#include\nhttp://x/loop\n", &looping);
    assert!(
        d.warnings.iter().any(|w| w.contains("nested deeper")),
        "{:?}",
        d.warnings
    );
    // A part with a Content-Disposition path keeps only the file name.
    let doc = mime(
        &[(
            "Content-Type: text/x-shellscript\nContent-Disposition: attachment; filename=\"../../evil.sh\"",
            "#!/bin/sh\n",
        )],
        false,
    );
    assert_eq!(
        decode(doc.as_bytes(), &no_fetch).parts[0].filename,
        "evil.sh"
    );
}

#[test]
fn mime_part_bodies_are_exact() {
    let doc = mime(
        &[("Content-Type: text/x-shellscript", "#!/bin/sh\necho a\n")],
        true,
    );
    let d = decode(doc.as_bytes(), &no_fetch);
    assert_eq!(d.parts[0].body, b"#!/bin/sh\necho a\n");
    let doc = mime(&[("Content-Type: text/x-shellscript", "#!/bin/sh")], false);
    assert_eq!(
        decode(doc.as_bytes(), &no_fetch).parts[0].body,
        b"#!/bin/sh"
    );
}

#[test]
fn background_process_does_not_block_boot() {
    // Like `nohup httpd &` in a lab script: the boot goes on once the script itself exits (not
    // when the daemon closes its output), and the daemon's later output still lands in the log.
    let inst = Inst::new(Some(
        b"#!/bin/sh\n(sleep 4; echo late-daemon-output) &\necho script-done\n",
    ));
    let console = inst.boot();
    assert!(console.contains("script-done") && console.contains("finished at"));
    assert!(
        !inst.output_log().contains("late-daemon-output"),
        "boot waited for the daemon"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !inst.output_log().contains("late-daemon-output") {
        assert!(
            std::time::Instant::now() < deadline,
            "daemon output never reached the log"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
