//! `amazon-linux-extras`: its topics (in `pkgmap::TOPICS`) installed as `yum install` of their
//! packages; `enable` and `list` answer as on Amazon Linux 2.

use super::super::pkgmap;
use super::{parse, yum};

/// `amazon-linux-extras [install [-y] TOPIC…|enable TOPIC…|list]`.
pub fn extras(args: &[String]) -> i32 {
    let o = match parse(args) {
        Ok(o) => o,
        Err(bad) => {
            eprintln!("amazon-linux-extras: error: no such option: {bad}");
            return 1;
        }
    };
    let (verb, topics) = o
        .words
        .split_first()
        .map_or(("list", &[][..]), |(v, t)| (v.as_str(), t));
    if verb == "list" {
        for (i, (t, _)) in pkgmap::TOPICS.iter().enumerate() {
            println!("{i:3}  {t:<28} available    [ =latest ]");
        }
        return 0;
    }
    if !matches!(verb, "install" | "enable") {
        eprintln!("amazon-linux-extras: unknown command {verb:?} (install, enable, list)");
        return 1;
    }
    if topics.is_empty() {
        eprintln!("amazon-linux-extras: {verb} needs a topic");
        return 1;
    }
    let mut names = Vec::new();
    for t in topics {
        let Some(p) = pkgmap::topic(t) else {
            eprintln!("Topic {t} is not found.");
            return 1;
        };
        for n in p.iter() {
            if !names.iter().any(|x: &String| x == n) {
                names.push(n.to_string());
            }
        }
    }
    if verb == "enable" {
        for t in topics {
            println!("  {t:<28} enabled (Debian's packages)");
        }
        println!(
            "\nNow you can install:\n # yum clean metadata\n # yum install {}",
            names.join(" ")
        );
        return 0;
    }
    let mut argv = vec!["install".to_string()];
    if o.yes {
        argv.push("-y".into());
    }
    if o.quiet {
        argv.push("-q".into());
    }
    argv.extend(names);
    yum("yum", &argv)
}
