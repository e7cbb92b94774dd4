//! Finding the project, choosing the folder, writing the file and declaring
//! its module.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use crate::args::{Kind, Make};
use crate::naming::{self, NameError, Names};
use crate::templates;

/// Why nothing (or, for `Io`, nothing lasting) was generated. Exit status 1.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid {kind} name {input:?}: {reason}")]
    Name {
        kind: &'static str,
        input: String,
        reason: NameError,
    },
    #[error(
        "no Cargo.toml in {} or any folder above it: run this inside a Cargo project, or pass --manifest-path",
        .0.display()
    )]
    NoProject(PathBuf),
    #[error("--manifest-path {}: no such file", .0.display())]
    NoManifest(PathBuf),
    #[error(
        "{} has no [package] (a virtual workspace manifest): run this inside a member crate, or pass --manifest-path <member>/Cargo.toml",
        .0.display()
    )]
    VirtualManifest(PathBuf),
    #[error("--path {}: {reason} (project root: {})", .path.display(), .root.display())]
    Path {
        path: PathBuf,
        root: PathBuf,
        reason: &'static str,
    },
    #[error("{} already exists; not overwriting it", .0.display())]
    Exists(PathBuf),
    #[error("cannot {action} {}: {err}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        err: io::Error,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_path_buf();
    move |err| Error::Io { action, path, err }
}

/// Runs `make`, from `cwd`; returns the lines to print.
pub fn run(make: &Make, cwd: &Path) -> Result<Vec<String>, Error> {
    let names = naming::parse(&make.name).map_err(|reason| Error::Name {
        kind: make.kind.word(),
        input: make.name.clone(),
        reason,
    })?;
    check_kind_rules(make.kind, &names).map_err(|reason| Error::Name {
        kind: make.kind.word(),
        input: make.name.clone(),
        reason,
    })?;

    let root = project_root(cwd, make.manifest_path.as_deref())?;
    let requested = make
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from(make.kind.default_dir()));
    let dir = resolve_dir(&root, &requested)?;
    let rel = |p: &Path| p.strip_prefix(&root).unwrap_or(p).to_path_buf();

    let file = dir.join(format!("{}.rs", names.module));
    let dir_module = dir.join(&names.module).join("mod.rs");
    for existing in [&file, &dir_module] {
        if fs::symlink_metadata(existing).is_ok() {
            return Err(Error::Exists(rel(existing)));
        }
    }

    let contents = match make.kind {
        Kind::Event => templates::event(&names),
        Kind::Room => templates::room(&names),
    };
    fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
    write_new(&file, &contents)?;

    let mut out = vec![match make.kind {
        Kind::Event => format!(
            "created {}: event `{}`, sent as \"{}\"",
            rel(&file).display(),
            names.ty,
            names.event_name()
        ),
        Kind::Room => {
            let key = names.room_key();
            format!(
                "created {}: room `{}`, key \"{key}\" (join_{key} / leave_{key})",
                rel(&file).display(),
                names.ty
            )
        }
    }];

    match declare(&dir, make.kind, &names.module) {
        Ok(change) => {
            let line = format!("pub mod {};", names.module);
            out.push(match &change {
                Declared::Created(p) => format!("created {} with `{line}`", rel(p).display()),
                Declared::Added(p) => format!("updated {}: added `{line}`", rel(p).display()),
                Declared::Already(p) => {
                    format!(
                        "unchanged {}: it already declares `{}`",
                        rel(p).display(),
                        names.module
                    )
                }
            });
            if let Declared::Created(_) = change
                && let Some(note) = parent_note(&root, &dir)
            {
                out.push(note);
            }
            Ok(out)
        }
        Err(e) => {
            // Do not leave a file no module declares.
            let _ = fs::remove_file(&file);
            Err(e)
        }
    }
}

/// Rules that depend on what is generated.
fn check_kind_rules(kind: Kind, names: &Names) -> Result<(), NameError> {
    match kind {
        Kind::Event => {
            if templates::EVENT_USES.contains(&names.ty.as_str()) {
                return Err(NameError::Shadows(names.ty.clone()));
            }
            // The derive refuses these names, so the file would not compile.
            let name = names.event_name();
            if let Some(why) = broadcast_rules::protocol::reserved(&name) {
                return Err(NameError::ReservedEvent { name, why });
            }
        }
        Kind::Room => {
            let key = names.room_key();
            if let Err(reason) = broadcast_rules::validate_key(&key) {
                return Err(NameError::Key { key, reason });
            }
        }
    }
    Ok(())
}

/// The folder of the nearest `Cargo.toml` at or above `cwd`, or of
/// `manifest`; canonical.
pub fn project_root(cwd: &Path, manifest: Option<&Path>) -> Result<PathBuf, Error> {
    let manifest = match manifest {
        Some(m) => {
            let m = cwd.join(m);
            if !m.is_file() {
                return Err(Error::NoManifest(m));
            }
            m
        }
        None => {
            let cwd = cwd.canonicalize().map_err(io_err("read", cwd))?;
            cwd.ancestors()
                .map(|dir| dir.join("Cargo.toml"))
                .find(|m| m.is_file())
                .ok_or(Error::NoProject(cwd.clone()))?
        }
    };
    let text = fs::read_to_string(&manifest).map_err(io_err("read", &manifest))?;
    if !text
        .lines()
        .any(|l| l.trim_start().starts_with("[package]"))
    {
        return Err(Error::VirtualManifest(manifest));
    }
    let manifest = manifest.canonicalize().map_err(io_err("read", &manifest))?;
    match manifest.parent() {
        Some(root) => Ok(root.to_path_buf()),
        None => Err(Error::NoProject(manifest)),
    }
}

/// `requested` (relative to `root`, or absolute) as an absolute folder
/// strictly inside `root` (canonical). `..` is resolved lexically, then the
/// deepest existing ancestor is canonicalized, so neither `..` nor a symlink
/// can lead outside the project.
pub fn resolve_dir(root: &Path, requested: &Path) -> Result<PathBuf, Error> {
    let refuse = |reason| Error::Path {
        path: requested.to_path_buf(),
        root: root.to_path_buf(),
        reason,
    };
    let joined = root.join(requested);
    let mut normal = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !normal.pop() {
                    return Err(refuse("it leads outside the project"));
                }
            }
            other => normal.push(other),
        }
    }
    // Resolve symlinks in the part that exists.
    let mut existing = normal.as_path();
    let mut rest = Vec::new();
    while fs::symlink_metadata(existing).is_err() {
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return Err(refuse("it leads outside the project")),
        }
    }
    let mut real = existing.canonicalize().map_err(io_err("read", existing))?;
    for name in rest.iter().rev() {
        real.push(name);
    }
    if !real.starts_with(root) {
        return Err(refuse("it leads outside the project"));
    }
    if real == root {
        return Err(refuse("pick a folder inside the project, not its root"));
    }
    if real.is_file() {
        return Err(refuse("it is a file, not a folder"));
    }
    Ok(real)
}

/// Creates `path` with `contents`; fails if it exists (also if it appeared
/// since it was checked).
fn write_new(path: &Path, contents: &str) -> Result<(), Error> {
    let mut f = match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(Error::Exists(path.to_path_buf()));
        }
        Err(e) => return Err(io_err("create", path)(e)),
    };
    if let Err(e) = f.write_all(contents.as_bytes()).and_then(|()| f.sync_all()) {
        drop(f);
        let _ = fs::remove_file(path);
        return Err(io_err("write", path)(e));
    }
    Ok(())
}

/// What happened to the folder's module file.
#[derive(Debug, PartialEq, Eq)]
enum Declared {
    Created(PathBuf),
    Added(PathBuf),
    Already(PathBuf),
}

/// The module file of `dir`: `dir/mod.rs`, or `dir.rs` beside it when that
/// exists and `mod.rs` does not (both at once is a compile error anyway).
fn module_file(dir: &Path) -> (PathBuf, bool) {
    let mod_rs = dir.join("mod.rs");
    if mod_rs.is_file() {
        return (mod_rs, true);
    }
    if let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) {
        let mut sibling = name.to_os_string();
        sibling.push(".rs");
        let sibling = parent.join(sibling);
        if sibling.is_file() {
            return (sibling, true);
        }
    }
    (mod_rs, false)
}

/// Declares `module` in the module file of `dir`.
fn declare(dir: &Path, kind: Kind, module: &str) -> Result<Declared, Error> {
    let (file, exists) = module_file(dir);
    if !exists {
        let (plural, command) = match kind {
            Kind::Event => ("broadcast events", "make event"),
            Kind::Room => ("rooms", "make room"),
        };
        let text = format!(
            "{}pub mod {module};\n",
            templates::mod_file(plural, command)
        );
        write_new(&file, &text)?;
        return Ok(Declared::Created(file));
    }
    let text = fs::read_to_string(&file).map_err(io_err("read", &file))?;
    match with_module(&text, module) {
        None => Ok(Declared::Already(file)),
        Some(new) => {
            fs::write(&file, new).map_err(io_err("write", &file))?;
            Ok(Declared::Added(file))
        }
    }
}

/// `text` with `pub mod <module>;` appended on a line of its own, keeping
/// the file's line endings; `None` if `text` already declares the module.
fn with_module(text: &str, module: &str) -> Option<String> {
    if declares(text, module) {
        return None;
    }
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut out = String::with_capacity(text.len() + module.len() + 12);
    out.push_str(text);
    if !text.is_empty() && !text.ends_with('\n') {
        out.push_str(eol);
    }
    out.push_str(&format!("pub mod {module};{eol}"));
    Some(out)
}

/// Whether a line of `text` declares `module`: `mod name;`, `pub mod name;`,
/// `pub(crate) mod name;`, or an inline `mod name {`, whatever the
/// visibility. A line-based check, not a parser: commented-out declarations
/// (`// pub mod x;`) do not count.
fn declares(text: &str, module: &str) -> bool {
    text.lines().any(|line| {
        let mut rest = line.trim();
        if let Some(r) = rest.strip_prefix("pub") {
            if !r.starts_with(|c: char| c.is_whitespace() || c == '(') {
                return false;
            }
            let r = r.trim_start();
            rest = match r.strip_prefix('(') {
                Some(inner) => match inner.find(')') {
                    Some(i) => inner[i + 1..].trim_start(),
                    None => return false,
                },
                None => r,
            };
        }
        let Some(r) = rest.strip_prefix("mod") else {
            return false;
        };
        if !r.starts_with(char::is_whitespace) {
            return false;
        }
        let r = r.trim_start();
        let r = r.strip_prefix("r#").unwrap_or(r);
        let Some(r) = r.strip_prefix(module) else {
            return false;
        };
        let r = r.trim_start();
        r.starts_with(';') || r.starts_with('{')
    })
}

/// After creating a module file for `dir`, a reminder to declare `dir`
/// itself in its parent module, unless that parent visibly does.
fn parent_note(root: &Path, dir: &Path) -> Option<String> {
    let name = dir.file_name()?.to_str()?;
    let parent = dir.parent()?;
    let candidates: Vec<PathBuf> = if parent == root.join("src") {
        vec![parent.join("lib.rs"), parent.join("main.rs")]
    } else {
        let mut v = vec![parent.join("mod.rs")];
        if let (Some(gp), Some(pname)) = (parent.parent(), parent.file_name()) {
            let mut s = pname.to_os_string();
            s.push(".rs");
            v.push(gp.join(s));
        }
        v
    };
    let declared = candidates
        .iter()
        .filter_map(|c| fs::read_to_string(c).ok())
        .any(|text| declares(&text, name));
    if declared {
        return None;
    }
    let target = candidates
        .iter()
        .find(|c| c.is_file())
        .or(candidates.first())?;
    let shown = target.strip_prefix(root).unwrap_or(target);
    Some(format!(
        "note: declare the new module in its parent: add `pub mod {name};` to {}",
        shown.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(input: &str) -> Names {
        naming::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"))
    }

    #[test]
    fn kind_rules() {
        assert!(check_kind_rules(Kind::Event, &names("ChatJoined")).is_ok());
        assert_eq!(
            check_kind_rules(Kind::Event, &names("String")),
            Err(NameError::Shadows("String".into()))
        );
        for (input, name) in [
            ("JoinChat", "join_chat"),
            ("leave_chat_event", "leave_chat"),
            ("Disconnect", "disconnect"),
            ("JoinedEvent", "joined"),
        ] {
            assert!(
                matches!(
                    check_kind_rules(Kind::Event, &names(input)),
                    Err(NameError::ReservedEvent { name: n, .. }) if n == name
                ),
                "{input}"
            );
        }
        // Reserved event names are fine as room keys.
        assert!(check_kind_rules(Kind::Room, &names("JoinChatRoom")).is_ok());

        let longest = "K".repeat(broadcast_rules::MAX_KEY_LEN);
        assert!(check_kind_rules(Kind::Room, &names(&format!("{longest}Room"))).is_ok());
        let err = check_kind_rules(Kind::Room, &names(&format!("{longest}K"))).unwrap_err();
        assert!(matches!(err, NameError::Key { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "its room key `{}` is invalid: the room key is 65 bytes long, more than the 64 allowed",
                "k".repeat(65)
            )
        );
    }

    #[test]
    fn declarations() {
        for text in [
            "pub mod chat;",
            "mod chat;",
            "  pub(crate) mod chat ;",
            "pub(in crate::x) mod chat;",
            "pub mod r#chat;",
            "//! docs\n\npub mod other;\npub mod chat;\n",
            "pub mod chat {\n}\n",
        ] {
            assert!(declares(text, "chat"), "{text:?}");
        }
        for text in [
            "",
            "// pub mod chat;",
            "pub mod chat_room;",
            "pub mod chatty;",
            "pub mod other; // chat",
            "pub use chat;",
            "pubmod chat;",
            "modchat;",
        ] {
            assert!(!declares(text, "chat"), "{text:?}");
        }
    }

    #[test]
    fn appending_keeps_existing_content() {
        assert_eq!(with_module("", "a").as_deref(), Some("pub mod a;\n"));
        assert_eq!(
            with_module("//! mine\n\npub mod z;\n", "a").as_deref(),
            Some("//! mine\n\npub mod z;\npub mod a;\n")
        );
        assert_eq!(
            with_module("pub mod z;", "a").as_deref(),
            Some("pub mod z;\npub mod a;\n")
        );
        assert_eq!(
            with_module("pub mod z;\r\n", "a").as_deref(),
            Some("pub mod z;\r\npub mod a;\r\n")
        );
        assert_eq!(with_module("pub mod z;\nmod a;\n", "a"), None);
    }

    /// A temp folder with `src/`, canonical, removed on drop (also when a
    /// test fails).
    struct TempRoot(PathBuf);

    impl Drop for TempRoot {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn temp_root(tag: &str) -> TempRoot {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "broadcast-cli-unit-{tag}-{}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(dir.join("src")).unwrap();
        TempRoot(dir.canonicalize().unwrap())
    }

    #[test]
    fn folders_inside_the_root_only() {
        let guard = temp_root("dirs");
        let root = guard.0.clone();
        let ok = |p: &str| resolve_dir(&root, Path::new(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert_eq!(ok("src/events"), root.join("src/events"));
        assert_eq!(
            ok("./src/../src/realtime/events"),
            root.join("src/realtime/events")
        );
        assert_eq!(ok(root.join("src/x").to_str().unwrap()), root.join("src/x"));
        let refused = |p: &str| resolve_dir(&root, Path::new(p)).is_err();
        assert!(refused("../outside"));
        assert!(refused("src/../../outside"));
        assert!(refused("."));
        assert!(refused("src/.."));
        assert!(refused("/"));
        assert!(refused(std::env::temp_dir().to_str().unwrap()));
        #[cfg(unix)]
        {
            let outside = temp_root("outside");
            std::os::unix::fs::symlink(&outside.0, root.join("src/link")).unwrap();
            assert!(refused("src/link/events"));
        }
    }

    #[test]
    fn module_file_prefers_mod_rs_then_sibling() {
        let guard = temp_root("modfile");
        let root = &guard.0;
        let dir = root.join("src/events");
        assert_eq!(module_file(&dir), (dir.join("mod.rs"), false));
        fs::write(root.join("src/events.rs"), "").unwrap();
        assert_eq!(module_file(&dir), (root.join("src/events.rs"), true));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("mod.rs"), "").unwrap();
        assert_eq!(module_file(&dir), (dir.join("mod.rs"), true));
    }
}
