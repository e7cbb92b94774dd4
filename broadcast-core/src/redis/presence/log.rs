//! Reading a room's presence log (see `scripts.rs`): a kept member list
//! brought up to date with the changes of the versions after it.

use std::collections::BTreeMap;

use crate::presence::Member;

/// `list` (sorted by id, the list of version `have` or newer) with the
/// log's `entries` applied, which must be exactly the versions after
/// `have` up to `version`, in order. `Err` says why the log cannot serve
/// (the caller then reads the whole list): a gap (a process that writes
/// no log changed the room), or an entry that is not the scripts'.
///
/// The list may be newer than `have` (it was read after its version): the
/// changes are "present with this JSON" and "absent" per member, so
/// applying the last change of each member gives the same list either way.
pub(super) fn apply(
    list: &[Member],
    have: &str,
    version: &str,
    entries: &[String],
) -> Result<Vec<Member>, String> {
    let (Ok(have), Ok(version)) = (have.parse::<u64>(), version.parse::<u64>()) else {
        return Err(format!("versions {have:?} and {version:?} are not numbers"));
    };
    if version.checked_sub(have) != Some(entries.len() as u64) {
        return Err(format!(
            "{} entries from version {have} to {version}",
            entries.len()
        ));
    }
    // The last change of each member, by id (so in the lists' order).
    let mut changes: BTreeMap<String, Option<Member>> = BTreeMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let mut lines = entry.split('\n');
        let want = have + 1 + i as u64;
        if lines.next().and_then(|v| v.parse::<u64>().ok()) != Some(want) {
            return Err(format!("entry {i} is not version {want}"));
        }
        for line in lines.filter(|l| !l.is_empty()) {
            let (joined, json) = match line.split_at_checked(1) {
                Some(("+", json)) => (true, json),
                Some(("-", json)) => (false, json),
                _ => return Err(format!("entry of version {want}: a line without + or -")),
            };
            let member =
                Member::from_json(json).map_err(|e| format!("entry of version {want}: {e}"))?;
            changes.insert(member.id().to_owned(), joined.then_some(member));
        }
    }
    let mut out = Vec::with_capacity(list.len() + changes.len());
    let mut changes = changes.into_iter().peekable();
    for member in list {
        while let Some((_, change)) = changes.next_if(|(id, _)| id.as_str() < member.id()) {
            out.extend(change);
        }
        match changes.next_if(|(id, _)| id == member.id()) {
            Some((_, change)) => out.extend(change),
            None => out.push(member.clone()),
        }
    }
    out.extend(changes.filter_map(|(_, change)| change));
    Ok(out)
}

/// A snapshot's version and members (see `scripts.rs`): `Err` for one
/// that is not the scripts'.
pub(super) fn snapshot(text: &str) -> Result<(&str, Vec<Member>), String> {
    let mut lines = text.split('\n');
    let version = lines.next().unwrap_or_default();
    if version.parse::<u64>().is_err() {
        return Err("no version".into());
    }
    let mut list = Vec::new();
    for line in lines {
        list.push(Member::from_json(line).map_err(|e| e.to_string())?);
    }
    // Written sorted; checked, since Redis is a trust boundary.
    if !list.windows(2).all(|w| w[0].id() < w[1].id()) {
        list.sort_unstable_by(|a, b| a.id().cmp(b.id()));
        list.dedup_by(|a, b| a.id() == b.id());
    }
    Ok((version, list))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(ids: &[&str]) -> Vec<Member> {
        ids.iter().map(|id| Member::new(*id).unwrap()).collect()
    }

    fn ids(list: &[Member]) -> Vec<&str> {
        list.iter().map(Member::id).collect()
    }

    fn entry(version: u64, lines: &[&str]) -> String {
        let mut e = version.to_string();
        for l in lines {
            e.push('\n');
            e.push_str(l);
        }
        e
    }

    #[test]
    fn changes_are_merged_in_order_and_the_last_change_of_a_member_wins() {
        let kept = list(&["b", "d", "f"]);
        let entries = [
            entry(11, &[r#"+{"id":"a"}"#, r#"-{"id":"d"}"#]),
            entry(
                12,
                &[r#"+{"id":"e"}"#, r#"+{"id":"g"}"#, r#"+{"id":"d","x":1}"#],
            ),
            entry(13, &[r#"-{"id":"g"}"#, r#"-{"id":"f"}"#]),
            // A leave of a member the hash no longer had: nothing to log.
            entry(14, &[]),
        ];
        let got = apply(&kept, "10", "14", &entries).unwrap();
        assert_eq!(ids(&got), ["a", "b", "d", "e"]);
        assert_eq!(got[2].json(), r#"{"id":"d","x":1}"#);
    }

    #[test]
    fn a_list_newer_than_its_version_comes_out_the_same() {
        // Read after version 10's changes and some of 11's.
        let newer = list(&["a", "b", "c"]);
        let older = list(&["b", "c"]);
        let entries = [entry(11, &[r#"+{"id":"a"}"#, r#"-{"id":"c"}"#])];
        let a = apply(&newer, "10", "11", &entries).unwrap();
        let b = apply(&older, "10", "11", &entries).unwrap();
        assert_eq!(ids(&a), ["a", "b"]);
        assert_eq!(ids(&a), ids(&b));
    }

    #[test]
    fn gaps_and_foreign_entries_are_refused() {
        let kept = list(&["a"]);
        let ok = entry(11, &[r#"+{"id":"b"}"#]);
        // Fewer entries than versions, a version out of sequence.
        assert!(apply(&kept, "10", "12", std::slice::from_ref(&ok)).is_err());
        assert!(apply(&kept, "10", "12", &[ok.clone(), entry(13, &[])]).is_err());
        assert!(apply(&kept, "9", "10", std::slice::from_ref(&ok)).is_err());
        // Not the scripts' lines, not numbers.
        assert!(apply(&kept, "10", "11", &[entry(11, &["{\"id\":\"b\"}"])]).is_err());
        assert!(apply(&kept, "10", "11", &[entry(11, &["+not json"])]).is_err());
        assert!(apply(&kept, "10", "11", &["x\n+{}".into()]).is_err());
        assert!(apply(&kept, "", "11", std::slice::from_ref(&ok)).is_err());
        assert!(apply(&kept, "12", "11", &[]).is_err());
    }

    #[test]
    fn snapshots_are_read_sorted_and_foreign_ones_refused() {
        let (v, got) = snapshot("17\n{\"id\":\"b\"}\n{\"id\":\"a\"}\n{\"id\":\"b\"}").unwrap();
        assert_eq!((v, ids(&got)), ("17", vec!["a", "b"]));
        let (v, got) = snapshot("5").unwrap();
        assert_eq!((v, got.len()), ("5", 0));
        assert!(snapshot("x\n{\"id\":\"a\"}").is_err());
        assert!(snapshot("5\nnot json").is_err());
        assert!(snapshot("").is_err());
    }
}
