//! Tests of the public resolver with the built-in parser (no `ssh` needed).

use super::*;

#[test]
fn targets_split_and_options_are_refused() {
    let t = split_target("alice@web:2200").unwrap();
    assert_eq!(
        (t.user.as_deref(), t.host.as_str(), t.port),
        (Some("alice"), "web", Some(2200))
    );
    assert!(split_target("-oProxyCommand=x").is_err());
    assert!(split_target("we b").is_err());
    assert!(split_target("web:notaport").is_err());
}

#[tokio::test]
async fn parser_resolves_and_lists_with_includes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("extra"),
        "Host db db.lan\n  HostName 10.1.1.1\n  User dba\n  Port 5022\n",
    )
    .unwrap();
    let config = d.join("config");
    std::fs::write(
        &config,
        format!(
            "Include {}\nHost web *.lan !bad\n  HostName web.example\n  ProxyJump b1,b2:2\n\
             Host db\n  User ignored\nHost *\n  ServerAliveInterval 15\n",
            d.join("extra").display()
        ),
    )
    .unwrap();
    let r = ConfigResolver::Parser
        .resolve("web", Some(&config))
        .await
        .unwrap();
    assert_eq!(r.resolved_by, ResolvedBy::Parser);
    assert!(r.from_config);
    assert_eq!(r.host_name, "web.example");
    assert_eq!(r.proxy_jump.len(), 2);
    assert_eq!(r.server_alive_interval, Some(Duration::from_secs(15)));
    let r = ConfigResolver::Parser
        .resolve("root@db:1", Some(&config))
        .await
        .unwrap();
    assert_eq!(
        (r.user.as_str(), r.port, r.host_name.as_str()),
        ("root", 1, "10.1.1.1")
    );
    let r = ConfigResolver::Parser
        .resolve("elsewhere", Some(&config))
        .await
        .unwrap();
    assert!(!r.from_config, "only Host * matched");

    let aliases = ConfigResolver::Parser
        .list_aliases(Some(&config))
        .await
        .unwrap();
    let names: Vec<_> = aliases.iter().map(|a| a.alias.as_str()).collect();
    assert_eq!(
        names,
        ["db", "db.lan", "web"],
        "file order, deduplicated, no patterns"
    );
    assert_eq!(aliases[0].user.as_deref(), Some("dba"));
    assert_eq!(aliases[0].port, Some(5022));
    assert_eq!(aliases[0].file, d.join("extra"));
    assert_eq!(aliases[2].proxy_jump.as_deref(), Some("b1,b2:2"));
    assert_eq!(aliases[2].line, 2);
}

#[tokio::test]
async fn missing_config_file_is_an_error() {
    let e = ConfigResolver::Parser
        .resolve("web", Some(Path::new("/nonexistent/ssh_config")))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/ssh_config"), "{e}");
    let e = ConfigResolver::OpenSsh("/nonexistent/ssh".into())
        .resolve("web", None)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::SshProgram { .. }), "{e}");
}
