//! The one table of Amazon Linux package names (AL2 and AL2023, as the AWS tutorials write
//! them) and the Debian packages and services they are on the lab's Debian-based images, plus
//! the `amazon-linux-extras` topics. Data only, and the lookups `yum` (`packages`) makes:
//!
//! 1. [`lookup`] an Amazon Linux name → its [`Entry`]: the table's, or else the same name in
//!    Debian (`php-X` also matches a versioned `php8.2-X`);
//! 2. each Debian requirement is `a|b|…`: installed when any alternative (or a package that
//!    `Provides:` it) is installed; apt installs the first; `*` stands for a PHP version;
//! 3. [`topic`] an extras topic → the Amazon Linux names it installs.

/// One Amazon Linux package (or several names for the same thing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// Debian requirements, each `alt|alt…`; empty: nothing to install on Debian.
    pub debian: Vec<String>,
    /// (Amazon Linux's service, Debian's service) when they differ.
    pub service: Option<(&'static str, &'static str)>,
    /// Said when there is something to know (what Debian does instead).
    pub note: Option<&'static str>,
}

/// (Amazon Linux names, Debian requirements, service (AL, Debian), note).
type Row = (
    &'static [&'static str],
    &'static [&'static str],
    Option<(&'static str, &'static str)>,
    Option<&'static str>,
);

/// The table (README's "yum on Debian images" documents it, row by row).
pub const TABLE: &[Row] = &[
    (&["httpd"], &["apache2"], Some(("httpd", "apache2")), None),
    (&["httpd-tools"], &["apache2-utils"], None, None),
    (
        &["mod_ssl"],
        &["apache2"],
        None,
        Some("Debian's apache2 has mod_ssl: run `a2enmod ssl`"),
    ),
    (
        &["php", "php8.1", "php8.2", "php8.3"],
        &["php|php*"],
        None,
        Some("Debian's php runs in Apache as mod_php"),
    ),
    (
        &["php-mysqlnd", "php-mysqli"],
        &["php-mysql|php-mysqlnd"],
        None,
        None,
    ),
    (
        &["php-json"],
        &["php*-common|php-common"],
        None,
        Some("JSON is built into PHP 8"),
    ),
    (&["php-devel"], &["php-dev|php*-dev"], None, None),
    (
        &["php-fpm"],
        &["php-fpm|php*-fpm"],
        Some(("php-fpm", "php*-fpm")),
        None,
    ),
    (
        &[
            "mariadb-server",
            "mariadb105-server",
            "mariadb1011-server",
            "mysql-server",
        ],
        &["mariadb-server"],
        None,
        None,
    ),
    (
        &["mariadb", "mariadb105", "mariadb1011", "mysql"],
        &["mariadb-client"],
        None,
        None,
    ),
    (&["nginx"], &["nginx"], None, None),
    (&["git"], &["git"], None, None),
    (&["stress"], &["stress"], None, None),
    (&["stress-ng"], &["stress-ng"], None, None),
    (
        &["tomcat", "tomcat9"],
        &["tomcat10"],
        Some(("tomcat", "tomcat10")),
        None,
    ),
    (
        &[
            "java-17-amazon-corretto",
            "java-17-amazon-corretto-headless",
            "java-11-amazon-corretto",
            "java-11-amazon-corretto-headless",
        ],
        &["openjdk-17-jre-headless"],
        None,
        None,
    ),
    (
        &["java-17-amazon-corretto-devel"],
        &["openjdk-17-jdk-headless"],
        None,
        None,
    ),
    (&["vim-enhanced"], &["vim"], None, None),
    (&["vim-minimal"], &["vim-tiny"], None, None),
    (&["bind-utils"], &["dnsutils|bind9-dnsutils"], None, None),
    (&["nmap-ncat", "nc"], &["netcat-openbsd"], None, None),
    (&["iproute"], &["iproute2"], None, None),
    (&["procps-ng"], &["procps"], None, None),
    (&["cronie"], &["cron"], Some(("crond", "cron")), None),
    (
        &["nfs-utils", "amazon-efs-utils"],
        &["nfs-common"],
        None,
        None,
    ),
    (&["openssl-devel"], &["libssl-dev"], None, None),
    (&["gcc-c++"], &["g++"], None, None),
    (
        &["redis6", "redis"],
        &["redis-server"],
        Some(("redis6", "redis-server")),
        None,
    ),
    (
        &["postgresql15", "postgresql16"],
        &["postgresql-client"],
        None,
        None,
    ),
    (
        &["postgresql15-server", "postgresql16-server"],
        &["postgresql"],
        None,
        None,
    ),
    (&["docker"], &["docker.io"], None, None),
    (
        &["mod_wsgi", "python3-mod_wsgi"],
        &["libapache2-mod-wsgi-py3"],
        None,
        None,
    ),
    (
        &["epel-release"],
        &[],
        None,
        Some("EPEL's packages are in Debian's own archive"),
    ),
];

/// `amazon-linux-extras` topics → the Amazon Linux names `install` installs.
pub const TOPICS: &[(&str, &[&str])] = &[
    (
        "lamp-mariadb10.2-php7.2",
        &["php-cli", "php-pdo", "php-mysqlnd", "mariadb"],
    ),
    ("php7.2", &["php", "php-cli", "php-pdo", "php-mysqlnd"]),
    ("php7.3", &["php", "php-cli", "php-pdo", "php-mysqlnd"]),
    ("php7.4", &["php", "php-cli", "php-pdo", "php-mysqlnd"]),
    ("php8.0", &["php", "php-cli", "php-pdo", "php-mysqlnd"]),
    ("php8.1", &["php", "php-cli", "php-pdo", "php-mysqlnd"]),
    ("php8.2", &["php", "php-cli", "php-pdo", "php-mysqlnd"]),
    ("mariadb10.5", &["mariadb-server", "mariadb"]),
    ("nginx1", &["nginx"]),
    ("epel", &["epel-release"]),
    ("docker", &["docker"]),
    ("redis6", &["redis6"]),
    ("postgresql14", &["postgresql15"]),
    ("tomcat9", &["tomcat"]),
    ("java-openjdk11", &["java-11-amazon-corretto"]),
    ("python3.8", &["python3"]),
    ("ansible2", &["ansible"]),
];

/// The entry for Amazon Linux name `name` (see the module docs, step 1).
pub fn lookup(name: &str) -> Entry {
    for (names, debian, service, note) in TABLE {
        if names.contains(&name) {
            return Entry {
                name: name.to_string(),
                debian: debian.iter().map(|s| s.to_string()).collect(),
                service: *service,
                note: *note,
            };
        }
    }
    let debian = match name.strip_prefix("php-") {
        Some(ext) => format!("{name}|php*-{ext}"),
        None => name.to_string(),
    };
    Entry {
        name: name.to_string(),
        debian: vec![debian],
        service: None,
        note: None,
    }
}

/// The Amazon Linux names of extras topic `t` (`php8.0`, or `php8.0=latest`).
pub fn topic(t: &str) -> Option<&'static [&'static str]> {
    let t = t.split_once('=').map_or(t, |(n, _)| n);
    TOPICS.iter().find(|(n, _)| *n == t).map(|(_, p)| *p)
}

/// Whether Debian package `pkg` matches alternative `alt` (`*` = one PHP version, `8.2`).
pub fn matches(alt: &str, pkg: &str) -> bool {
    match alt.split_once('*') {
        None => alt == pkg,
        Some((pre, post)) => pkg
            .strip_prefix(pre)
            .and_then(|rest| rest.strip_suffix(post))
            .is_some_and(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.')),
    }
}

/// The alternative apt installs for requirement `req`: its first without a `*`.
pub fn apt_name(req: &str) -> &str {
    req.split('|').find(|a| !a.contains('*')).unwrap_or(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tutorial_names_map_to_debian_packages_and_services() {
        let httpd = lookup("httpd");
        assert_eq!(httpd.debian, ["apache2"]);
        assert_eq!(httpd.service, Some(("httpd", "apache2")));
        assert_eq!(lookup("mariadb105-server").debian, ["mariadb-server"]);
        assert_eq!(lookup("mysql").debian, ["mariadb-client"]);
        assert_eq!(lookup("php-mysqlnd").debian, ["php-mysql|php-mysqlnd"]);
        assert_eq!(lookup("git").debian, ["git"]);
        assert!(lookup("epel-release").debian.is_empty());
        // Not in the table: the same name; a PHP extension also in its versioned package.
        assert_eq!(lookup("cowsay").debian, ["cowsay"]);
        assert_eq!(lookup("php-gd").debian, ["php-gd|php*-gd"]);
    }

    #[test]
    fn every_name_is_in_the_table_once_and_topics_use_known_names() {
        let mut seen = std::collections::HashSet::new();
        for (names, debian, _, _) in TABLE {
            for n in *names {
                assert!(seen.insert(*n), "{n} is in the table twice");
            }
            for d in *debian {
                assert!(!apt_name(d).contains('*'), "{d}: apt needs a plain name");
            }
        }
        for (t, names) in TOPICS {
            assert!(!names.is_empty(), "{t}");
        }
        assert_eq!(topic("php8.0=latest").unwrap()[0], "php");
        assert!(topic("kernel-5.10").is_none());
    }

    #[test]
    fn a_star_is_a_php_version() {
        assert!(matches("php*-fpm", "php8.2-fpm"));
        assert!(matches("php*", "php8.2"));
        assert!(!matches("php*", "php-common"));
        assert!(!matches("php*-fpm", "php-fpm"));
        assert!(matches("apache2", "apache2"));
        assert!(!matches("apache2", "apache2-bin"));
        assert_eq!(apt_name("php|php*"), "php");
        assert_eq!(apt_name("php-fpm|php*-fpm"), "php-fpm");
    }
}
