//! `~/.ssh/config` support against the real OpenSSH client (`ssh -G`, which never connects),
//! and the built-in parser checked against it. Every path is absolute: OpenSSH takes `~`
//! from the passwd entry, not `$HOME`, so a temp config cannot rely on it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::path::{Path, PathBuf};
use std::time::Duration;

use ssh_session_core::config::{list_host_aliases, resolve_host, ConfigResolver, ResolvedBy};
use ssh_session_core::{ConnectOptions, Error, HostKeyPolicy, JumpHost, TransportKind};

/// A config in a temp dir: `config` includes `included.conf`.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        for key in ["web_key", "match_key"] {
            std::fs::write(dir.path().join("keys").join(key), "not a real key").unwrap();
        }
        // Only the second known_hosts file exists: it is the one to use.
        std::fs::write(dir.path().join("known_hosts_other"), "").unwrap();
        std::fs::write(
            dir.path().join("included.conf"),
            "Host bastion1 bastion2\n  User jumpuser\n\
             Host nocheck\n  HostName 127.0.0.9\n  StrictHostKeyChecking no\n\
             Host viaproxy\n  ProxyCommand ssh -W %h:%p bastion1\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("config"),
            format!(
                "Include {d}/included.conf\n\
                 Host web\n  HostName 10.0.0.5\n  Port 2222\n  User deploy\n\
                 \x20 IdentityFile {d}/keys/web_key\n\
                 \x20 UserKnownHostsFile {d}/known_hosts_web {d}/known_hosts_other\n\
                 \x20 ServerAliveInterval 20\n  ConnectTimeout 7\n\
                 Host inner\n  HostName 10.9.9.9\n  User app\n\
                 \x20 ProxyJump jumper@bastion1:2201,bastion2\n\
                 Host special\n  HostName special.example\n\
                 Match host special.example\n  User matchuser\n  IdentityFile {d}/keys/match_key\n\
                 Host *\n  StrictHostKeyChecking accept-new\n"
            ),
        )
        .unwrap();
        Fixture { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A second config file in the fixture's directory.
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn have_ssh() -> bool {
    let ok = std::process::Command::new("ssh")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("OpenSSH client not installed: skipping the ssh -G part of this test");
    }
    ok
}

fn local_user() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn alias_resolves_to_exact_values() {
    if !have_ssh() {
        return;
    }
    let fx = Fixture::new();
    let r = resolve_host("web", Some(&fx.config())).await.unwrap();
    assert_eq!(r.resolved_by, ResolvedBy::OpenSsh);
    assert!(r.from_config);
    assert_eq!(r.alias, "web");
    assert_eq!(r.host_name, "10.0.0.5");
    assert_eq!(r.port, 2222);
    assert_eq!(r.user, "deploy");
    assert_eq!(r.identity_files, [fx.path("keys/web_key")]);
    assert_eq!(
        r.user_known_hosts_files,
        [fx.path("known_hosts_web"), fx.path("known_hosts_other")]
    );
    assert_eq!(r.strict_host_key_checking.as_deref(), Some("accept-new"));
    assert_eq!(r.connect_timeout, Some(Duration::from_secs(7)));
    assert_eq!(r.server_alive_interval, Some(Duration::from_secs(20)));
    assert_eq!(r.server_alive_count_max, Some(3));
    assert!(r.proxy_jump.is_empty() && r.proxy_command.is_none());
    assert!(!r.forward_agent && !r.compression && !r.identities_only);
    assert_eq!(r.config_file.as_deref(), Some(fx.config().as_path()));
}

#[tokio::test]
async fn two_hop_proxy_jump() {
    if !have_ssh() {
        return;
    }
    let fx = Fixture::new();
    let r = resolve_host("inner", Some(&fx.config())).await.unwrap();
    assert_eq!((r.host_name.as_str(), r.user.as_str()), ("10.9.9.9", "app"));
    assert_eq!(
        r.proxy_jump,
        [
            JumpHost {
                host: "bastion1".into(),
                port: Some(2201),
                user: Some("jumper".into())
            },
            JumpHost {
                host: "bastion2".into(),
                port: None,
                user: None
            },
        ]
    );
    // The hops are aliases too, defined in the included file.
    let hop = resolve_host("bastion2", Some(&fx.config())).await.unwrap();
    assert_eq!(hop.user, "jumpuser");
    assert!(hop.from_config);
}

#[tokio::test]
async fn match_block_applies_only_to_the_matching_host() {
    if !have_ssh() {
        return;
    }
    let fx = Fixture::new();
    let special = resolve_host("special", Some(&fx.config())).await.unwrap();
    assert_eq!(special.host_name, "special.example");
    assert_eq!(special.user, "matchuser");
    assert_eq!(special.identity_files, [fx.path("keys/match_key")]);
    // `Match host` tests the real host name, so naming it directly matches too...
    let direct = resolve_host("special.example", Some(&fx.config()))
        .await
        .unwrap();
    assert_eq!(direct.user, "matchuser");
    assert!(!direct.from_config, "no Host block names special.example");
    // ...and nothing else gets its user or key.
    for other in ["web", "inner", "unknown-host"] {
        let r = resolve_host(other, Some(&fx.config())).await.unwrap();
        assert_ne!(r.user, "matchuser", "{other}");
        assert!(
            !r.identity_files.contains(&fx.path("keys/match_key")),
            "{other}"
        );
    }
    let unknown = resolve_host("unknown-host", Some(&fx.config()))
        .await
        .unwrap();
    assert!(!unknown.from_config);
    assert_eq!(unknown.host_name, "unknown-host");
    assert_eq!(unknown.user, local_user());
}

#[tokio::test]
async fn explicit_user_and_port_override_the_config() {
    if !have_ssh() {
        return;
    }
    let fx = Fixture::new();
    let r = resolve_host("root@web:2022", Some(&fx.config()))
        .await
        .unwrap();
    assert_eq!(
        (
            r.alias.as_str(),
            r.user.as_str(),
            r.port,
            r.host_name.as_str()
        ),
        ("web", "root", 2022, "10.0.0.5")
    );
    let r = resolve_host("web:2023", Some(&fx.config())).await.unwrap();
    assert_eq!((r.user.as_str(), r.port), ("deploy", 2023));
    let e = resolve_host("-oProxyCommand=evil", Some(&fx.config())).await;
    assert!(matches!(e, Err(Error::Config { .. })));
}

#[tokio::test]
async fn aliases_are_listed_with_their_details() {
    let fx = Fixture::new();
    for resolver in [ConfigResolver::Auto, ConfigResolver::Parser] {
        let aliases = resolver.list_aliases(Some(&fx.config())).await.unwrap();
        let names: Vec<_> = aliases.iter().map(|a| a.alias.as_str()).collect();
        assert_eq!(
            names,
            ["bastion1", "bastion2", "nocheck", "viaproxy", "web", "inner", "special"],
            "{resolver:?}"
        );
        let web = &aliases[4];
        assert_eq!(web.host_name.as_deref(), Some("10.0.0.5"));
        assert_eq!(
            (web.user.as_deref(), web.port),
            (Some("deploy"), Some(2222))
        );
        assert_eq!(web.file, fx.config());
        assert_eq!(aliases[0].file, fx.path("included.conf"));
        let inner = &aliases[5];
        assert_eq!(
            inner.proxy_jump.as_deref(),
            Some("jumper@bastion1:2201,bastion2")
        );
    }
    if have_ssh() {
        // With ssh -G the Match block is evaluated too.
        let aliases = list_host_aliases(Some(&fx.config())).await.unwrap();
        let special = aliases.iter().find(|a| a.alias == "special").unwrap();
        assert_eq!(special.user.as_deref(), Some("matchuser"));
    }
}

#[tokio::test]
async fn connect_options_follow_the_config() {
    if !have_ssh() {
        return;
    }
    let fx = Fixture::new();
    let o = ConnectOptions::from_ssh_config("web", Some(&fx.config()))
        .await
        .unwrap();
    assert_eq!(
        (o.host.as_str(), o.port, o.user.as_str()),
        ("10.0.0.5", 2222, "deploy")
    );
    let keys: Vec<&Path> = o.identities.iter().map(|i| i.path.as_path()).collect();
    assert_eq!(keys, [fx.path("keys/web_key")]);
    assert_eq!(
        o.known_hosts,
        fx.path("known_hosts_other"),
        "the first that exists"
    );
    assert_eq!(o.host_key_policy, HostKeyPolicy::AcceptNew);
    assert_eq!(o.connect_timeout, Duration::from_secs(7));
    assert_eq!(o.server_alive_interval, Some(Duration::from_secs(20)));
    assert_eq!(o.config_file.as_deref(), Some(fx.config().as_path()));
    let o = ConnectOptions::from_ssh_config("inner", Some(&fx.config()))
        .await
        .unwrap();
    assert_eq!(o.proxy_jump.len(), 2);
}

#[tokio::test]
async fn strict_host_key_checking_no_is_refused() {
    if !have_ssh() {
        return;
    }
    let fx = Fixture::new();
    let e = ConnectOptions::from_ssh_config("nocheck", Some(&fx.config()))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
    assert!(
        msg.contains("StrictHostKeyChecking no") && msg.contains("accept-new"),
        "{msg}"
    );
}

#[tokio::test]
async fn proxy_command_needs_the_openssh_transport() {
    if !have_ssh() {
        return;
    }
    let fx = Fixture::new();
    let e = ConnectOptions::from_ssh_config("viaproxy", Some(&fx.config()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ProxyCommand ssh -W %h:%p bastion1") && e.contains("OpenSSH transport"),
        "{e}"
    );
    let r = resolve_host("viaproxy", Some(&fx.config())).await.unwrap();
    let o = r
        .apply_to(ConnectOptions::new("x", "y").transport(TransportKind::OpenSsh))
        .unwrap();
    assert_eq!(
        o.host, "viaproxy",
        "ssh gets the alias and runs the ProxyCommand itself"
    );
}

#[tokio::test]
async fn invalid_config_surfaces_the_ssh_error() {
    if !have_ssh() {
        return;
    }
    let fx = Fixture::new();
    let bad = fx.write("bad", "Host x\n  Port 22\n  Bogus yes\n");
    let e = resolve_host("x", Some(&bad)).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
    assert!(
        msg.contains("line 3: Bad configuration option: bogus"),
        "{msg}"
    );
    assert!(!msg.contains("Pseudo-terminal"), "{msg}");
    let e = resolve_host("x", Some(&fx.path("missing")))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");
}

#[tokio::test]
async fn parser_agrees_with_ssh_g() {
    if !have_ssh() {
        return;
    }
    let fx = Fixture::new();
    let hosts = [
        "web",
        "inner",
        "special",
        "special.example",
        "unknown-host",
        "root@web:2022",
        "bastion1",
        "nocheck",
        "viaproxy",
    ];
    for host in hosts {
        let exact = resolve_host(host, Some(&fx.config())).await.unwrap();
        let mut parsed = ConfigResolver::Parser
            .resolve(host, Some(&fx.config()))
            .await
            .unwrap();
        assert_eq!(parsed.resolved_by, ResolvedBy::Parser);
        parsed.resolved_by = ResolvedBy::OpenSsh;
        assert_eq!(parsed, exact, "{host}");
    }
    // Evaluation-order corner cases: a Match before the HostName it tests does not match
    // (ssh's first pass), negations, `%` tokens, ProxyCommand before ProxyJump wins.
    let user = local_user();
    let tricky = fx.write(
        "tricky",
        &format!(
            "Match host real.example\n  User early\n\
             Host a\n  HostName real.example\n\
             Host *.lan !db.lan\n  User lanuser\n  IdentityFile /k/%h_%r_%p_%n\n\
             Match originalhost db.lan user {user}\n  Port 2201\n\
             Match !host x*,y* all\n  Compression yes\n\
             Host b\n  HostName %h.example.org\n  ProxyCommand nc %h %p\n  ProxyJump x\n\
             Host c\n  ForwardAgent yes\n  IdentitiesOnly yes\n  ServerAliveCountMax 5\n\
             \x20 HostKeyAlias cee\n  UserKnownHostsFile /kh/%k_%h /kh/%d_%u_%i\n"
        ),
    );
    let hosts = [
        "a",
        "real.example",
        "web.lan",
        "db.lan",
        "other@db.lan",
        "b",
        "c",
        "xray",
        "c:99",
    ];
    for host in hosts {
        let exact = resolve_host(host, Some(&tricky)).await.unwrap();
        let mut parsed = ConfigResolver::Parser
            .resolve(host, Some(&tricky))
            .await
            .unwrap();
        parsed.resolved_by = ResolvedBy::OpenSsh;
        assert_eq!(parsed, exact, "{host}");
    }
    let a = resolve_host("a", Some(&tricky)).await.unwrap();
    assert_eq!(a.user, user, "the Match line came before HostName was set");
    let b = resolve_host("b", Some(&tricky)).await.unwrap();
    assert_eq!(b.proxy_command.as_deref(), Some("nc %h %p"));
    assert!(b.proxy_jump.is_empty());
}

#[tokio::test]
async fn parser_refuses_what_only_ssh_can_evaluate() {
    let fx = Fixture::new();
    let cfg = fx.write(
        "exec",
        "Host web\n  HostName 10.0.0.5\nMatch exec \"true\"\n  User fromexec\n",
    );
    let e = ConfigResolver::Parser
        .resolve("web", Some(&cfg))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Match exec") && e.contains("line 3") && e.contains("openssh-client"),
        "{e}"
    );
    if have_ssh() {
        let r = resolve_host("web", Some(&cfg)).await.unwrap();
        assert_eq!(r.user, "fromexec");
    }
}

#[tokio::test]
async fn listing_fifty_aliases_is_fast() {
    let fx = Fixture::new();
    let text: String = (0..50)
        .map(|i| format!("Host host{i}\n  HostName 10.0.0.{i}\n  User u{i}\n"))
        .collect();
    let cfg = fx.write("fifty", &text);
    let start = std::time::Instant::now();
    let aliases = list_host_aliases(Some(&cfg)).await.unwrap();
    let took = start.elapsed();
    eprintln!("listed {} aliases in {took:?}", aliases.len());
    assert_eq!(aliases.len(), 50);
    assert_eq!(aliases[49].host_name.as_deref(), Some("10.0.0.49"));
    assert_eq!(aliases[7].user.as_deref(), Some("u7"));
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn a_host_spec_applies_its_overrides_after_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        "Host pc\n  HostName 10.1.2.3\n  User alice\n  Port 2200\n  IdentityFile /keys/config_key\n  ProxyCommand nc %h %p\n",
    )
    .unwrap();
    let mut spec = ssh_session_core::HostSpec::new("pc");
    spec.config_file = Some(config);
    // The native transport cannot run a ProxyCommand: refused, saying what to use.
    let e = spec.resolve().await.unwrap_err();
    assert!(e.to_string().contains("OpenSSH transport"), "{e}");
    spec.transport = ssh_session_core::TransportKind::OpenSsh;
    spec.user = Some("bob".into());
    spec.identity_files = vec!["/keys/given".into()];
    let o = spec.resolve().await.unwrap();
    assert_eq!(o.host, "pc", "ssh runs the ProxyCommand for the alias");
    assert_eq!((o.user.as_str(), o.port), ("bob", 2200));
    let keys: Vec<_> = o.identities.iter().map(|i| i.path.clone()).collect();
    assert_eq!(
        keys,
        [
            std::path::PathBuf::from("/keys/given"),
            "/keys/config_key".into()
        ]
    );
    let e = ssh_session_core::HostSpec::new(" ")
        .resolve()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no host given"), "{e}");
}

/// What a front end adds (its own known_hosts, key policy, timeouts, whose agent) wins over
/// the config, and an `IdentityAgent` in the config still wins over the caller's agent.
#[tokio::test]
async fn host_spec_overrides_win_over_the_config() {
    use ssh_session_core::{Agent, HostKeyPolicy, HostSpec};
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        "Host web\n  HostName 10.9.8.7\n  ConnectTimeout 3\n  ServerAliveInterval 7\n  \
         UserKnownHostsFile /cfg/known\n  StrictHostKeyChecking yes\n\
         Host agented\n  HostName 10.9.8.6\n  IdentityAgent /cfg/agent.sock\n",
    )
    .unwrap();
    let plain = HostSpec::new("web")
        .config_file(&config)
        .resolve()
        .await
        .unwrap();
    assert_eq!(plain.connect_timeout, Duration::from_secs(3));
    assert_eq!(plain.known_hosts, std::path::PathBuf::from("/cfg/known"));

    let o = HostSpec::new("web")
        .config_file(&config)
        .known_hosts("/front/known")
        .host_key_policy(HostKeyPolicy::AcceptNew)
        .connect_timeout(Duration::from_secs(9))
        .server_alive_interval(Duration::from_secs(2))
        .server_alive_count_max(5)
        .agent(Agent::Socket("/client/agent.sock".into()))
        .resolve()
        .await
        .unwrap();
    assert_eq!(o.host, "10.9.8.7");
    assert_eq!(o.known_hosts, std::path::PathBuf::from("/front/known"));
    assert_eq!(o.host_key_policy, HostKeyPolicy::AcceptNew);
    assert_eq!(o.connect_timeout, Duration::from_secs(9));
    assert_eq!(o.server_alive_interval, Some(Duration::from_secs(2)));
    assert_eq!(o.server_alive_count_max, 5);
    assert_eq!(
        o.agent_socket.as_deref(),
        Some(std::path::Path::new("/client/agent.sock"))
    );
    assert!(o.use_agent);

    // A caller without an agent gets none; without any agent at all, none either.
    let o = HostSpec::new("web")
        .config_file(&config)
        .agent(Agent::Missing)
        .resolve()
        .await
        .unwrap();
    assert!(!o.use_agent && o.agent_socket.is_none(), "{o:?}");
    // The config's IdentityAgent wins over the caller's agent, but not over "no agent".
    let o = HostSpec::new("agented")
        .config_file(&config)
        .agent(Agent::Socket("/client/agent.sock".into()))
        .resolve()
        .await
        .unwrap();
    assert_eq!(
        o.agent_socket.as_deref(),
        Some(std::path::Path::new("/cfg/agent.sock"))
    );
    let o = HostSpec::new("agented")
        .config_file(&config)
        .use_agent(false)
        .resolve()
        .await
        .unwrap();
    assert!(!o.use_agent, "{o:?}");
}
