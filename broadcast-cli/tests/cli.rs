//! `cargo-broadcast` as a user runs it: names, refusals, `--path`, the
//! module file, finding the project, exit statuses.

mod common;

use std::fs;

use common::{Project, assert_code, ok, run_in, stderr, stdout, unique_temp};

#[test]
fn help_and_version() {
    let p = Project::new("help");
    for args in [
        &["--help"][..],
        &["-h"],
        &["broadcast", "--help"],
        &["make", "event", "-h"],
    ] {
        let out = p.run(args);
        assert_code(&out, 0);
        let text = stdout(&out);
        assert!(
            text.contains("Usage: cargo broadcast make event <Name>"),
            "{text}"
        );
        assert!(text.contains("--path <dir>"), "{text}");
    }
    let out = p.run(&["--version"]);
    assert_code(&out, 0);
    assert_eq!(
        stdout(&out),
        format!("cargo-broadcast {}\n", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(p.files(), ["Cargo.toml", "src/lib.rs"]);
}

#[test]
fn usage_errors_exit_2() {
    let p = Project::new("usage");
    for args in [
        &[][..],
        &["broadcast"],
        &["make"],
        &["make", "event"],
        &["make", "widget", "Foo"],
        &["generate", "event", "Foo"],
        &["make", "event", "Foo", "Bar"],
        &["make", "event", "Foo", "--force"],
        &["make", "event", "Foo", "--path"],
        &["make", "event", "Foo", "--path", "a", "--path", "b"],
    ] {
        let out = p.run(args);
        assert_code(&out, 2);
        let err = stderr(&out);
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(
            err.contains("Usage: cargo broadcast make event"),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(p.files(), ["Cargo.toml", "src/lib.rs"]);
}

#[test]
fn invalid_names_are_refused() {
    let p = Project::new("names");
    for (kind, name, why) in [
        ("event", "1abc", "cannot start with a digit"),
        ("event", "fn", "`fn` is a Rust keyword"),
        ("event", "type", "`type` is a Rust keyword"),
        (
            "event",
            "Type",
            "`type` is a Rust keyword, so it cannot be the module (file) name",
        ),
        ("event", "Self", "`Self` is a Rust keyword"),
        ("event", "foo-bar", "'-' is not allowed"),
        ("event", "foo.rs", "'.' is not allowed"),
        ("event", "../evil", "'.' is not allowed"),
        ("event", "", "the name is empty"),
        ("event", "r#foo", "raw identifiers"),
        ("event", "_", "at least one letter"),
        ("event", "chät", "'ä' is not allowed"),
        ("event", "updateChat", "write `UpdateChat` or `update_chat`"),
        ("event", "chat_2", "write `Chat2` or `chat2`"),
        ("event", "String", "would shadow a type the template uses"),
        (
            "event",
            "JoinChat",
            "its event name `join_chat` is reserved: clients send `join_*`",
        ),
        ("event", "disconnect", "Socket.IO reserves this event name"),
        (
            "room",
            &"K".repeat(65),
            "is 65 bytes long, more than the 64 allowed",
        ),
        ("room", "fn", "`fn` is a Rust keyword"),
        ("room", "Chat_Room", "write `ChatRoom` or `chat_room`"),
    ] {
        let out = p.run(&["make", kind, name]);
        assert_code(&out, 1);
        let err = stderr(&out);
        assert!(
            err.starts_with(&format!("error: invalid {kind} name {name:?}: ")),
            "{name}: {err}"
        );
        assert!(err.contains(why), "{name}: {err}");
    }
    // Nothing written, not even a folder.
    assert_eq!(p.files(), ["Cargo.toml", "src/lib.rs"]);
    assert!(!p.exists("src/events") && !p.exists("src/rooms"));
}

#[test]
fn existing_files_are_never_overwritten() {
    let p = Project::new("overwrite");
    ok(&p, &["make", "event", "UpdateChat"]);
    ok(&p, &["make", "room", "ChatRoom"]);
    p.write("src/events/update_chat.rs", "// mine\n");
    p.write("src/rooms/chat_room.rs", "// mine too\n");
    let mod_rs = p.read("src/events/mod.rs");

    for (args, file) in [
        (
            &["make", "event", "UpdateChat"][..],
            "src/events/update_chat.rs",
        ),
        (
            &["make", "event", "update_chat"],
            "src/events/update_chat.rs",
        ),
        (&["make", "room", "chat_room"], "src/rooms/chat_room.rs"),
    ] {
        let out = p.run(args);
        assert_code(&out, 1);
        assert_eq!(
            stderr(&out),
            format!("error: {file} already exists; not overwriting it\n")
        );
        assert!(out.stdout.is_empty());
    }
    assert_eq!(p.read("src/events/update_chat.rs"), "// mine\n");
    assert_eq!(p.read("src/rooms/chat_room.rs"), "// mine too\n");
    assert_eq!(p.read("src/events/mod.rs"), mod_rs);

    // A module that is a folder counts too.
    p.write("src/events/folder_event/mod.rs", "// a folder module\n");
    let out = p.run(&["make", "event", "FolderEvent"]);
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("src/events/folder_event/mod.rs already exists"),
        "{}",
        stderr(&out)
    );
    assert!(!p.exists("src/events/folder_event.rs"));
}

#[test]
fn pascal_and_snake_case_give_the_same_files() {
    for (kind, pascal, snake, file) in [
        (
            "event",
            "UpdateChat",
            "update_chat",
            "src/events/update_chat.rs",
        ),
        (
            "event",
            "UserNotifiedEvent",
            "user_notified_event",
            "src/events/user_notified_event.rs",
        ),
        ("room", "ChatRoom", "chat_room", "src/rooms/chat_room.rs"),
    ] {
        let a = Project::new("pascal");
        let b = Project::new("snake");
        let out_a = ok(&a, &["make", kind, pascal]);
        let out_b = ok(&b, &["make", kind, snake]);
        assert_eq!(out_a, out_b);
        assert_eq!(a.files(), b.files());
        assert_eq!(a.read(file), b.read(file));
        let mod_rs = format!("src/{kind}s/mod.rs");
        assert_eq!(a.read(&mod_rs), b.read(&mod_rs));
        assert!(a.read(file).contains(&format!("pub struct {pascal}")));
    }
    // An acronym keeps its PascalCase spelling; its snake_case names the
    // same file and event.
    let p = Project::new("acronym");
    let out = ok(&p, &["make", "event", "HTTPRequestFailed"]);
    assert!(out.contains("created src/events/http_request_failed.rs: event `HTTPRequestFailed`, sent as \"http_request_failed\""), "{out}");
    let out = p.run(&["make", "event", "http_request_failed"]);
    assert_code(&out, 1);
    assert!(stderr(&out).contains("http_request_failed.rs already exists"));
}

#[test]
fn path_chooses_a_folder_inside_the_project() {
    let p = Project::new("path");
    let out = ok(
        &p,
        &[
            "make",
            "event",
            "UpdateChat",
            "--path",
            "src/realtime/events",
        ],
    );
    assert_eq!(
        out,
        "created src/realtime/events/update_chat.rs: event `UpdateChat`, sent as \"update_chat\"\n\
         created src/realtime/events/mod.rs with `pub mod update_chat;`\n\
         note: declare the new module in its parent: add `pub mod events;` to src/realtime/mod.rs\n"
    );
    assert!(
        p.read("src/realtime/events/update_chat.rs")
            .contains("pub struct UpdateChat {")
    );
    // `--path=<dir>`, and an absolute path inside the project.
    ok(
        &p,
        &["make", "room", "ChatRoom", "--path=src/realtime/rooms"],
    );
    let abs = p.path("src/elsewhere");
    ok(
        &p,
        &["make", "room", "LobbyRoom", "--path", abs.to_str().unwrap()],
    );
    assert!(p.exists("src/realtime/rooms/chat_room.rs"));
    assert!(p.exists("src/elsewhere/lobby_room.rs"));

    let outside = unique_temp("outside");
    let outside_name = outside.file_name().unwrap().to_str().unwrap();
    let escape = format!("../{outside_name}");
    let sneaky = format!("src/../../{outside_name}");
    for path in [
        escape.as_str(),
        sneaky.as_str(),
        outside.to_str().unwrap(),
        "/",
        ".",
        "src/..",
    ] {
        let out = p.run(&["make", "event", "Escaped", "--path", path]);
        assert_code(&out, 1);
        let err = stderr(&out);
        assert!(
            err.starts_with(&format!("error: --path {path}: ")),
            "{path}: {err}"
        );
        assert!(
            err.contains("outside the project") || err.contains("not its root"),
            "{path}: {err}"
        );
    }
    assert!(!outside.exists());
    assert!(
        !p.files().iter().any(|f| f.contains("escaped")),
        "{:?}",
        p.files()
    );

    // A path through a symlink that leaves the project.
    #[cfg(unix)]
    {
        fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, p.path("src/link")).unwrap();
        let out = p.run(&["make", "event", "Escaped", "--path", "src/link/events"]);
        assert_code(&out, 1);
        assert!(
            stderr(&out).contains("outside the project"),
            "{}",
            stderr(&out)
        );
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
        fs::remove_dir_all(&outside).unwrap();
    }

    // A file is not a folder.
    let out = p.run(&["make", "event", "Escaped", "--path", "src/lib.rs"]);
    assert_code(&out, 1);
    assert!(stderr(&out).contains("not a folder"), "{}", stderr(&out));
}

#[test]
fn mod_rs_declares_each_module_once_and_keeps_its_content() {
    let p = Project::new("modrs");
    // Existing content without a final newline; one module already declared.
    let original = "//! Mine.\n\npub mod zeta;\npub(crate) mod update_chat;";
    p.write("src/events/mod.rs", original);

    let out = ok(&p, &["make", "event", "UpdateChat"]);
    assert!(
        out.contains("unchanged src/events/mod.rs: it already declares `update_chat`"),
        "{out}"
    );
    assert_eq!(p.read("src/events/mod.rs"), original);

    let out = ok(&p, &["make", "event", "Alpha"]);
    assert!(
        out.contains("updated src/events/mod.rs: added `pub mod alpha;`"),
        "{out}"
    );
    ok(&p, &["make", "event", "beta"]);
    // Appended in the order generated, after the untouched original.
    assert_eq!(
        p.read("src/events/mod.rs"),
        format!("{original}\npub mod alpha;\npub mod beta;\n")
    );

    // A refused overwrite does not add a second line.
    assert_code(&p.run(&["make", "event", "Alpha"]), 1);
    let text = p.read("src/events/mod.rs");
    for module in ["zeta", "update_chat", "alpha", "beta"] {
        let n = text
            .lines()
            .filter(|l| l.ends_with(&format!("mod {module};")))
            .count();
        assert_eq!(n, 1, "{module} in:\n{text}");
    }

    // A fresh mod.rs: a header and one line per module.
    ok(&p, &["make", "room", "ChatRoom"]);
    ok(&p, &["make", "room", "LobbyRoom"]);
    assert_eq!(
        p.read("src/rooms/mod.rs"),
        "//! The application's rooms, one module each (`cargo broadcast make room <Name>` adds them).\n\n\
         pub mod chat_room;\npub mod lobby_room;\n"
    );
}

#[test]
fn a_sibling_module_file_is_used_instead_of_mod_rs() {
    let p = Project::new("sibling");
    p.write("src/events.rs", "//! Events.\npub mod old;\n");
    let out = ok(&p, &["make", "event", "UpdateChat"]);
    assert!(
        out.contains("updated src/events.rs: added `pub mod update_chat;`"),
        "{out}"
    );
    assert_eq!(
        p.read("src/events.rs"),
        "//! Events.\npub mod old;\npub mod update_chat;\n"
    );
    assert!(p.exists("src/events/update_chat.rs"));
    assert!(!p.exists("src/events/mod.rs"));
}

#[test]
fn note_when_the_crate_root_does_not_declare_the_folder() {
    let p = Project::new("note");
    p.write("src/lib.rs", "//! Nothing declared.\n");
    let out = ok(&p, &["make", "event", "UpdateChat"]);
    assert!(
        out.ends_with(
            "note: declare the new module in its parent: add `pub mod events;` to src/lib.rs\n"
        ),
        "{out}"
    );
    let out = ok(&p, &["make", "event", "Other"]);
    assert!(!out.contains("note:"), "only when mod.rs is created: {out}");
    // Declared in lib.rs: no note.
    let out = ok(&p, &["make", "room", "ChatRoom"]);
    assert!(out.contains("add `pub mod rooms;` to src/lib.rs"), "{out}");
    let q = Project::new("no-note");
    let out = ok(&q, &["make", "room", "ChatRoom"]);
    assert!(!out.contains("note:"), "{out}");
}

#[test]
fn the_project_is_the_nearest_cargo_toml() {
    let p = Project::new("root");
    fs::create_dir_all(p.path("src/deep/er")).unwrap();
    let out = run_in(&p.path("src/deep/er"), &["make", "event", "UpdateChat"]);
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("created src/events/update_chat.rs"),
        "{}",
        stdout(&out)
    );
    assert!(p.exists("src/events/update_chat.rs"));

    // --manifest-path from anywhere.
    let elsewhere = unique_temp("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    let manifest = p.path("Cargo.toml");
    let out = run_in(
        &elsewhere,
        &[
            "make",
            "room",
            "ChatRoom",
            "--manifest-path",
            manifest.to_str().unwrap(),
        ],
    );
    assert_code(&out, 0);
    assert!(p.exists("src/rooms/chat_room.rs"));
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);

    let out = run_in(
        &elsewhere,
        &[
            "make",
            "room",
            "Other",
            "--manifest-path",
            "missing/Cargo.toml",
        ],
    );
    assert_code(&out, 1);
    assert!(stderr(&out).contains("no such file"), "{}", stderr(&out));

    // No Cargo.toml above: only checkable if the temp folder is not itself
    // inside a Cargo project.
    if !elsewhere
        .ancestors()
        .any(|d| d.join("Cargo.toml").is_file())
    {
        let out = run_in(&elsewhere, &["make", "event", "UpdateChat"]);
        assert_code(&out, 1);
        assert!(
            stderr(&out).contains("no Cargo.toml in"),
            "{}",
            stderr(&out)
        );
        assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
    }

    // A virtual workspace manifest is not a project to write into.
    fs::write(elsewhere.join("Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
    let out = run_in(&elsewhere, &["make", "event", "UpdateChat"]);
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("virtual workspace manifest"),
        "{}",
        stderr(&out)
    );
    assert!(!elsewhere.join("src").exists());
    fs::remove_dir_all(&elsewhere).unwrap();
}
