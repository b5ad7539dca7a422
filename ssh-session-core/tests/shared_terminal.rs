//! A terminal that a person and programs share (issue #12): a person attached gets their
//! shell (line editor, completion, history, prompt), every command line they run is
//! recorded exactly from the shell's own hooks, programs' commands wait their turn, are
//! typed at the person's prompt, and hear what the person did. Real sshd, real bash and
//! zsh; the keys a person types are sent as the bytes a terminal sends.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is its failure report

use std::time::Duration;

use ssh_session_core::{
    AttachOptions, Attachment, Error, ExecOptions, HistoryEntry, HumanActivity, Interrupt, Notice,
    Session, SessionConfig, SessionManager, ShellSession, TerminalEvent,
};
use ssh_session_testkit::prelude::*;

const PROMPT_WAIT: Duration = Duration::from_secs(10);

struct On {
    manager: SessionManager,
    s: ShellSession,
    _sshd: Option<(Sshd, tempfile::TempDir)>,
}

async fn open(shell: &str) -> On {
    let (sshd, options) = login_shell_server(shell);
    let manager = SessionManager::new();
    let s = manager
        .open(
            shell.rsplit('/').next().unwrap(),
            options,
            SessionConfig::default(),
        )
        .await
        .unwrap();
    On {
        manager,
        s,
        _sshd: sshd,
    }
}

async fn attach(s: &ShellSession) -> Attachment {
    let a = s
        .attach(AttachOptions::new("attach", 100, 30))
        .await
        .unwrap();
    a.wait_prompt(PROMPT_WAIT).await.unwrap();
    a
}

/// The person's commands in history, once `n` of them have ended (bounded: 10 s).
async fn people(s: &ShellSession, n: usize) -> Vec<HistoryEntry> {
    for _ in 0..200 {
        let h: Vec<_> = s
            .history()
            .into_iter()
            .filter(|e| e.source == "attach")
            .collect();
        if h.len() >= n && h.iter().all(|e| e.duration.is_some()) {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{n} commands of a person never ended: {:?}", s.history());
}

/// The person's commands in history once `n` of them have started, running or not
/// (bounded: 10 s).
async fn started(s: &ShellSession, n: usize) -> Vec<HistoryEntry> {
    for _ in 0..200 {
        let h: Vec<_> = s
            .history()
            .into_iter()
            .filter(|e| e.source == "attach")
            .collect();
        if h.len() >= n {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{n} commands of a person never started: {:?}", s.history());
}

/// Polls the attached screen until it contains `needle` (bounded: 10 s).
async fn shows(a: &Attachment, needle: &str) -> String {
    for _ in 0..200 {
        let screen = a.screen();
        if screen.contains(needle) {
            return screen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the screen never showed {needle:?}:\n{}", a.screen());
}

/// Drains an attachment's events into text until it holds `needle` (bounded: 10 s).
async fn sees(a: &mut Attachment, seen: &mut String, needle: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains(needle) {
        match tokio::time::timeout_at(deadline, a.next()).await {
            Ok(Some(TerminalEvent::Output(b))) => seen.push_str(&String::from_utf8_lossy(&b)),
            Ok(Some(TerminalEvent::Notice(n))) => seen.push_str(&format!("[{n}]")),
            Ok(Some(other)) => panic!("{other:?} while waiting for {needle:?}: {seen}"),
            Ok(None) | Err(_) => panic!("never saw {needle:?}: {seen}"),
        }
    }
}

fn quick() -> ExecOptions {
    ExecOptions::timeout(Duration::from_secs(20))
}

async fn a_persons_commands_are_recorded_exactly_and_seen_by_programs(shell: &str) {
    let on = open(shell).await;
    let s = &on.s;
    let a = attach(s).await;
    a.send(b"cd /tmp && export PERSON=here\r").await.unwrap();
    a.wait_prompt(PROMPT_WAIT).await.unwrap();
    a.send(b"false\r").await.unwrap();
    a.wait_prompt(PROMPT_WAIT).await.unwrap();
    a.send(b"false | true\r").await.unwrap();
    a.wait_prompt(PROMPT_WAIT).await.unwrap();
    // Marks that output prints, without the session's nonce or malformed with a guess
    // of it, are output: never a command boundary.
    a.send(b"printf '\\033]133;D;0\\007\\033]133;A\\007__ssB__ssE'; echo printed\r")
        .await
        .unwrap();
    a.wait_prompt(PROMPT_WAIT).await.unwrap();
    a.send(b"sleep 30\r").await.unwrap();
    let running = started(s, 5).await;
    assert!(
        running[..4].iter().all(|e| e.duration.is_some()),
        "{running:?}"
    );
    assert_eq!(running[4].command, "sleep 30");
    assert!(running[4].duration.is_none(), "{running:?}");
    shows(&a, "sleep 30").await;
    // The person's sleep runs: a program's command is refused at once, naming it.
    let busy = match s.exec("echo no", quick()).await {
        Err(e @ Error::HumanBusy { .. }) => e,
        Err(Error::Busy { .. }) | Ok(_) => panic!("a program ran into a person's command"),
        Err(e) => panic!("{e}"),
    };
    let text = busy.to_string();
    assert!(
        text.contains("sleep 30") && text.contains("attach"),
        "{text}"
    );
    // Nor may a program type into it or signal it: it is theirs.
    for refused in [
        s.send_input(b"y\n").await,
        s.interrupt(Interrupt::Int).await,
        s.interrupt(Interrupt::Kill).await,
    ] {
        assert!(
            matches!(refused, Err(Error::HumanBusy { .. })),
            "{refused:?}"
        );
    }
    a.send(b"\x03").await.unwrap();
    a.wait_prompt(PROMPT_WAIT).await.unwrap();
    let h = people(s, 5).await;
    let codes: Vec<_> = h
        .iter()
        .map(|e| (e.command.as_str(), e.exit_code))
        .collect();
    assert_eq!(
        codes,
        [
            ("cd /tmp && export PERSON=here", Some(0)),
            ("false", Some(1)),
            ("false | true", Some(0)),
            (
                "printf '\\033]133;D;0\\007\\033]133;A\\007__ssB__ssE'; echo printed",
                Some(0)
            ),
            ("sleep 30", Some(130)),
        ],
        "{shell}"
    );
    assert!(h.iter().all(|e| e.cwd.as_deref() == Some("/tmp")), "{h:?}");
    // The program hears of all five, then runs where the person left the shell.
    let r = s.exec("pwd; echo $PERSON", quick()).await.unwrap();
    assert_eq!(r.text(), "/tmp\nhere\n", "{shell}");
    let heard = r
        .notices
        .iter()
        .find_map(|n| match n {
            Notice::HumanActivity { commands, cwd } => Some((commands.clone(), cwd.clone())),
            _ => None,
        })
        .expect("the person's commands are reported");
    assert_eq!(heard.0.len(), 5);
    assert_eq!(heard.1, "/tmp");
    assert!(heard.0[3].output.contains("printed"), "{:?}", heard.0[3]);
    // The program's command was typed at the person's prompt, where they saw it run.
    shows(&a, "echo $PERSON").await;
    let r = s.exec("echo again", quick()).await.unwrap();
    assert!(r.notices.is_empty(), "told once: {:?}", r.notices);
    drop(a);
    on.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bash_commands_of_a_person_are_recorded_exactly() {
    a_persons_commands_are_recorded_exactly_and_seen_by_programs("bash").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn zsh_commands_of_a_person_are_recorded_exactly() {
    a_persons_commands_are_recorded_exactly_and_seen_by_programs("/usr/bin/zsh").await;
}

async fn completion_and_recall_work(shell: &str) {
    let on = open(shell).await;
    let s = &on.s;
    run(
        s,
        "mkdir -p /tmp/ss-complete && touch /tmp/ss-complete/unique-file-name",
    )
    .await;
    let a = attach(s).await;
    a.send(b"ls /tmp/ss-complete/uniq\t").await.unwrap();
    shows(&a, "unique-file-name").await;
    a.send(b"\r").await.unwrap();
    let h = people(s, 1).await;
    // Exactly the line that ran: bash's completion leaves the space it added after a
    // file name, zsh's removes it when the line is accepted.
    let completed = match shell {
        "bash" => "ls /tmp/ss-complete/unique-file-name ",
        _ => "ls /tmp/ss-complete/unique-file-name",
    };
    assert_eq!(h[0].command, completed);
    a.wait_prompt(PROMPT_WAIT).await.unwrap();
    a.send(b"echo recalled-$((40+2))\r").await.unwrap();
    people(s, 2).await;
    a.wait_prompt(PROMPT_WAIT).await.unwrap();
    // Up, Up: the `ls` again.
    a.send(b"\x1b[A\x1b[A\r").await.unwrap();
    let h = people(s, 3).await;
    assert_eq!(h[2].command, completed, "{shell}");
    drop(a);
    on.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bash_completion_and_recall_work() {
    completion_and_recall_work("bash").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn zsh_completion_and_recall_work() {
    completion_and_recall_work("/usr/bin/zsh").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partial_line_is_never_clobbered_and_refuse_once_refuses_once() {
    let on = open("bash").await;
    let s = &on.s;
    let a = attach(s).await;
    a.send(b"echo half").await.unwrap();
    shows(&a, "echo half").await;
    match s.exec("echo program", quick()).await {
        Err(Error::HumanBusy {
            typing: true,
            command,
            ..
        }) => assert_eq!(command, "echo half"),
        other => panic!("{other:?}"),
    }
    // Erased again: the line is empty, so the program may type at the prompt.
    a.send(b"\x7f".repeat(9).as_slice()).await.unwrap();
    for _ in 0..100 {
        if !a.screen().contains("echo half") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.send(b"touch /tmp/ss-person-was-here\r").await.unwrap();
    people(s, 1).await;
    let refuse = ExecOptions {
        human_activity: HumanActivity::RefuseOnce,
        ..quick()
    };
    match s.exec("echo program", refuse.clone()).await {
        Err(Error::HumanActivity { commands, cwd, .. }) => {
            assert_eq!(commands.len(), 1);
            assert_eq!(commands[0].command, "touch /tmp/ss-person-was-here");
            assert_eq!(commands[0].exit_code, Some(0));
            assert!(!cwd.is_empty());
        }
        other => panic!("{other:?}"),
    }
    let r = s.exec("echo program", refuse).await.unwrap();
    assert_eq!(r.text(), "program\n");
    drop(a);
    on.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_line_redrawn_by_the_line_editor_is_still_the_persons() {
    let on = open("bash").await;
    let s = &on.s;
    run(
        s,
        "mkdir -p /tmp/ss-redraw && touch /tmp/ss-redraw/fileone /tmp/ss-redraw/filetwo",
    )
    .await;
    let a = attach(s).await;
    // Tab Tab lists the choices and prints the prompt (its mark included) and the line
    // again: the line is still theirs.
    a.send(b"ls /tmp/ss-redraw/file").await.unwrap();
    shows(&a, "ls /tmp/ss-redraw/file").await;
    // Two Tabs as a person types them, apart: readline lists on the second one.
    a.send(b"\t").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.send(b"\t").await.unwrap();
    let mut redrawn = false;
    for _ in 0..200 {
        let screen = a.screen();
        if screen.contains("filetwo") && screen.matches("ls /tmp/ss-redraw/f").count() >= 2 {
            redrawn = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(redrawn, "no redrawn line:\n{}", a.screen());
    match s.exec("echo program", quick()).await {
        Err(Error::HumanBusy {
            typing: true,
            command,
            ..
        }) => assert!(command.ends_with("ls /tmp/ss-redraw/file"), "{command:?}"),
        other => panic!("{other:?}\n{}", a.screen()),
    }
    drop(a);
    on.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_who_fell_behind_gets_the_screen_and_nothing_stale() {
    let on = open("bash").await;
    let s = &on.s;
    let mut a = attach(s).await;
    // Far more output than the backlog of terminal events (1024) while this person reads
    // none. 6.9 MB overflowed it only while the output came in small chunks (one CI run
    // got larger ones and never lagged); 20.9 MB would fit only in events of 20 KiB or
    // more on average.
    let r = s
        .exec(
            "seq 1 3000000",
            ExecOptions::timeout(Duration::from_secs(120)),
        )
        .await
        .unwrap();
    assert_eq!(r.exit_code, Some(0));
    // First the screen at attach, then, having lagged, the screen as it is now...
    let first = a.next().await;
    assert!(matches!(first, Some(TerminalEvent::Output(_))), "{first:?}");
    match a.next().await {
        Some(TerminalEvent::Output(b)) => {
            let text = String::from_utf8_lossy(&b);
            assert!(text.contains("3000000"), "not the screen now: {text:?}");
        }
        other => panic!("{other:?}"),
    }
    // ...and then nothing from before it.
    let stale = tokio::time::timeout(Duration::from_millis(500), a.next()).await;
    assert!(stale.is_err(), "stale output after the screen: {stale:?}");
    drop(a);
    on.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_that_shows_nothing_is_a_person_typing() {
    let on = open("bash").await;
    let s = &on.s;
    let a = attach(s).await;
    // Ctrl-X starts a longer key in readline and prints nothing: a paste typed now would
    // be read as the rest of that key. The program is refused once the echo is overdue.
    a.send(b"\x18").await.unwrap();
    match s.exec("echo program", quick()).await {
        Err(Error::HumanBusy {
            typing: true,
            command,
            ..
        }) => assert_eq!(command, "keys that show nothing yet"),
        other => panic!("{other:?}"),
    }
    // Ctrl-G ends the key; a key typed and erased shows, and the line is empty again.
    a.send(b"\x07a").await.unwrap();
    shows(&a, "a").await;
    a.send(b"\x7f").await.unwrap();
    let r = s.exec("echo program-$((1+1))", quick()).await.unwrap();
    assert_eq!(r.text(), "program-2\n");
    drop(a);
    on.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_people_see_one_terminal_and_programs_output() {
    let on = open("bash").await;
    let s = &on.s;
    let mut one = attach(s).await;
    let mut two = attach(s).await;
    let (mut seen1, mut seen2) = (String::new(), String::new());
    one.send(b"echo from-$((1+1))-one\r").await.unwrap();
    sees(&mut two, &mut seen2, "from-2-one").await;
    people(s, 1).await;
    one.wait_prompt(PROMPT_WAIT).await.unwrap();
    two.send(b"echo from-$((2+1))-two\r").await.unwrap();
    sees(&mut one, &mut seen1, "from-3-two").await;
    people(s, 2).await;
    one.wait_prompt(PROMPT_WAIT).await.unwrap();
    let r = s
        .exec("echo program-$((3+1))", ExecOptions::default())
        .await
        .unwrap();
    assert_eq!(r.text(), "program-4\n");
    sees(&mut one, &mut seen1, "program-4").await;
    sees(&mut two, &mut seen2, "program-4").await;
    // A late joiner gets the screen as it is.
    let mut three = s.attach(AttachOptions::default()).await.unwrap();
    let mut seen3 = String::new();
    sees(&mut three, &mut seen3, "program-4").await;
    drop((one, two, three));
    on.manager.shutdown().await;
}

conformance! {
    async fn after_detach_programs_run_on_the_agent_path_with_state_kept() {
        let (manager, s) = session("detach").await;
        let a = attach(&s).await;
        a.send(b"cd /tmp; export KEPT=1; sleep 300 &\r").await.unwrap();
        people(&s, 1).await;
        a.wait_prompt(PROMPT_WAIT).await.unwrap();
        drop(a);
        let r = run(&s, "pwd; echo $KEPT; jobs | wc -l").await;
        assert_eq!(r.text(), "/tmp\n1\n1\n");
        // Back on the agent path: nothing but the output, and no prompt on the screen's
        // last line after a command.
        let r = run(&s, "echo plain").await;
        assert_eq!(r.text(), "plain\n");
        assert_eq!(r.exit_code, Some(0));
        run(&s, "kill %1").await;
        manager.shutdown().await;
    }
}

conformance! {
    async fn a_program_racing_a_persons_enter_never_types_into_their_command() {
        let (manager, s) = session("race").await;
        let a = attach(&s).await;
        for round in 1..=5 {
            a.send(b"read -r line\r").await.unwrap();
            // At once: the shell may not even have echoed the line yet. Typed then, the
            // program's command would land in the person's command (measured with a
            // sleep: it did, and got sleep's exit code as its own).
            match s.exec("echo program", quick()).await {
                Err(Error::HumanBusy { .. }) => {}
                other => panic!("round {round}: {other:?}"),
            }
            // Their command ends with their answer (a Ctrl-C could land in the instant
            // before the shell hands the terminal to it, and be lost, as for anyone).
            started(&s, round).await;
            a.send(b"answer\r").await.unwrap();
            people(&s, round).await;
            a.wait_prompt(PROMPT_WAIT).await.unwrap();
        }
        let h = people(&s, 5).await;
        assert!(
            h.iter()
                .all(|e| e.command == "read -r line" && e.exit_code == Some(0)),
            "{h:?}"
        );
        assert!(!s.history().iter().any(|e| e.command == "echo program"));
        drop(a);
        manager.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dash_says_it_cannot_track_and_programs_wait() {
    let on = open("/bin/dash").await;
    let s = &on.s;
    let mut a = s.attach(AttachOptions::default()).await.unwrap();
    let mut seen = String::new();
    sees(&mut a, &mut seen, "no command hooks").await;
    a.wait_prompt(PROMPT_WAIT).await.unwrap();
    assert!(!a.tracked());
    match s.exec("echo program", quick()).await {
        Err(e @ Error::UntrackedTerminal { .. }) => {
            assert!(e.to_string().contains("until they detach"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    a.send(b"cd /tmp\n").await.unwrap();
    a.wait_prompt(PROMPT_WAIT).await.unwrap();
    drop(a);
    assert_eq!(out(s, "pwd").await, "/tmp\n");
    on.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn full_screen_programs_and_resizes_work_and_are_recorded() {
    let on = open("bash").await;
    let s = &on.s;
    run(
        s,
        "printf 'first-line\\nsecond-line\\n' > /tmp/ss-pager.txt",
    )
    .await;
    let a = attach(s).await;
    a.send(b"less /tmp/ss-pager.txt\r").await.unwrap();
    shows(&a, "second-line").await;
    a.send(b"q").await.unwrap();
    a.wait_prompt(PROMPT_WAIT).await.unwrap();
    a.resize(120, 40).await.unwrap();
    a.send(b"stty size\r").await.unwrap();
    shows(&a, "40 120").await;
    let h = people(s, 2).await;
    let codes: Vec<_> = h
        .iter()
        .map(|e| (e.command.as_str(), e.exit_code))
        .collect();
    assert_eq!(
        codes,
        [("less /tmp/ss-pager.txt", Some(0)), ("stty size", Some(0))]
    );
    drop(a);
    // The program hears of both, with the output of each.
    let r = s.exec("true", quick()).await.unwrap();
    let heard = r
        .notices
        .iter()
        .find_map(|n| match n {
            Notice::HumanActivity { commands, .. } => Some(commands.clone()),
            _ => None,
        })
        .expect("reported");
    assert!(heard[1].output.contains("40 120"), "{:?}", heard[1]);
    on.manager.shutdown().await;
}

/// A block pasted at the prompt is one command: each of its lines, one exit code.
async fn a_pasted_block_is_one_command_with_every_line(shell: &str) {
    let on = open(shell).await;
    let s = &on.s;
    let a = attach(s).await;
    a.send(b"\x1b[200~echo one\necho two; false\x1b[201~\r")
        .await
        .unwrap();
    let h = people(s, 1).await;
    assert_eq!(h[0].command, "echo one\necho two; false", "{shell}: {h:?}");
    assert_eq!(h[0].exit_code, Some(1));
    // Typed one after the other, they are two.
    a.wait_prompt(PROMPT_WAIT).await.unwrap();
    a.send(b"echo one\recho three\r").await.unwrap();
    let h = people(s, 3).await;
    let lines: Vec<_> = h.iter().map(|e| e.command.as_str()).collect();
    assert_eq!(lines[1..], ["echo one", "echo three"], "{shell}: {h:?}");
    drop(a);
    on.manager.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bash_a_pasted_block_is_one_command() {
    a_pasted_block_is_one_command_with_every_line("bash").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn zsh_a_pasted_block_is_one_command() {
    a_pasted_block_is_one_command_with_every_line("/usr/bin/zsh").await;
}
