//! Tests of the fallback evaluator (a sibling file to keep `fallback.rs` short).

use super::*;
use crate::config::parse::parse_into;
use std::path::Path;

fn local() -> Local {
    Local {
        home: "/home/me".into(),
        user: "me".into(),
        uid: 1000,
        hostname: "laptop".into(),
    }
}

fn parsed(text: &str) -> ParsedConfig {
    let mut cfg = ParsedConfig::default();
    let (file, dir) = (Path::new("/cfg/config"), Path::new("/cfg"));
    parse_into(&mut cfg, text, file, dir, &[], 0, &local()).unwrap();
    cfg
}

fn eval(cfg: &ParsedConfig, host: &str, user: Option<&str>, port: Option<u16>) -> Result<Dump> {
    let req = Request { host, user, port };
    evaluate(cfg, &req, &local())
}

const CONFIG: &str = "\
Host web web2
  HostName 10.0.0.5
  User deploy
  IdentityFile ~/.ssh/web_%r
Match host 10.0.0.5 user deploy
  Port 2200
  IdentityFile /keys/matched
Match originalhost db
  User dba
Host *
  User everyone
  Port 22
  ProxyJump bastion
  ProxyCommand nc %h %p
  ConnectTimeout 1m30s
  UserKnownHostsFile ~/.ssh/kh_%h
";

#[test]
fn first_value_wins_identities_accumulate_and_match_sees_hostname() {
    let cfg = parsed(CONFIG);
    let d = eval(&cfg, "web", None, None).unwrap();
    assert_eq!(d.get("hostname"), Some("10.0.0.5"));
    assert_eq!(d.get("user"), Some("deploy"));
    assert_eq!(
        d.get("port"),
        Some("2200"),
        "Match host sees the HostName set earlier"
    );
    let ids: Vec<_> = d.all("identityfile").collect();
    assert_eq!(ids, ["~/.ssh/web_%r", "/keys/matched"]);
    assert_eq!(d.get("proxyjump"), Some("bastion"));
    assert_eq!(
        d.get("proxycommand"),
        None,
        "ProxyJump came first and excludes it"
    );
    assert_eq!(d.get("connecttimeout"), Some("90"));
    assert_eq!(
        d.get("userknownhostsfile"),
        Some("/home/me/.ssh/kh_10.0.0.5")
    );
}

#[test]
fn command_line_user_and_port_win_and_feed_match() {
    let cfg = parsed(CONFIG);
    let d = eval(&cfg, "web", Some("root"), Some(1022)).unwrap();
    assert_eq!((d.get("user"), d.get("port")), (Some("root"), Some("1022")));
    // `Match ... user deploy` no longer holds, so its IdentityFile is not added.
    assert_eq!(d.all("identityfile").count(), 1);
}

#[test]
fn match_applies_only_to_its_host() {
    let cfg = parsed(CONFIG);
    assert_eq!(
        eval(&cfg, "db", None, None).unwrap().get("user"),
        Some("dba")
    );
    let other = eval(&cfg, "other", None, None).unwrap();
    assert_eq!(other.get("user"), Some("everyone"));
    assert_eq!(other.get("hostname"), Some("other"));
    let ids: Vec<_> = other.all("identityfile").collect();
    assert_eq!(ids.len(), 7, "OpenSSH's defaults when none is configured");
}

#[test]
fn defaults_match_ssh_g() {
    let d = eval(&parsed(""), "Plain", None, None).unwrap();
    assert_eq!(
        d.get("hostname"),
        Some("plain"),
        "ssh lower-cases the host name"
    );
    assert_eq!(d.get("user"), Some("me"));
    assert_eq!(d.get("port"), Some("22"));
    assert_eq!(d.get("stricthostkeychecking"), Some("ask"));
    assert_eq!(d.get("connecttimeout"), Some("none"));
    assert_eq!(
        d.get("userknownhostsfile"),
        Some("/home/me/.ssh/known_hosts /home/me/.ssh/known_hosts2")
    );
}

#[test]
fn what_cannot_be_evaluated_is_refused_with_its_location() {
    let cfg = parsed("Host other\n  User x\nMatch exec \"test -f /x\"\n  User wrong\n");
    let e = eval(&cfg, "web", None, None).unwrap_err().to_string();
    assert!(
        e.contains("/cfg/config line 3") && e.contains("Match exec"),
        "{e}"
    );
    let cfg = parsed("Host web\n  HostName %C.lan\n");
    let e = eval(&cfg, "web", None, None).unwrap_err().to_string();
    assert!(e.contains("HostName") && e.contains("line 2"), "{e}");
    let cfg = parsed("Host web\n  UserKnownHostsFile /kh/%C\n");
    assert!(eval(&cfg, "web", None, None)
        .unwrap_err()
        .to_string()
        .contains("%C"));
    let cfg = parsed("Host web\n  Port abc\n");
    assert!(eval(&cfg, "web", None, None)
        .unwrap_err()
        .to_string()
        .contains("Port"));
    // A Match inside a block that does not apply is never evaluated.
    let cfg = parsed("Host *\n  User u\n");
    assert!(eval(&cfg, "web", None, None).is_ok());
}

#[test]
fn times_parse_like_openssh() {
    assert_eq!(convtime("90"), Some(90));
    assert_eq!(convtime("1m30s"), Some(90));
    assert_eq!(convtime("2h"), Some(7200));
    assert_eq!(convtime("1x"), None);
    assert_eq!(convtime(""), None);
}

#[test]
fn block_details_ignore_match_blocks() {
    let cfg = parsed(CONFIG);
    let d = block_details(&cfg, "web2");
    assert_eq!(d.get("hostname").map(String::as_str), Some("10.0.0.5"));
    assert_eq!(d.get("port").map(String::as_str), Some("22"));
}
