//! The rooms (top-level modules of `src/`) import each other without circles, and `domain`
//! imports none of them: read from the source, so a new `use` that closes a circle fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every top-level module of `src/`, with the other top-level modules its code names as
/// `crate::NAME` (comments left out).
fn room_imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut rooms: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if name == "lib" || name == "main" {
            continue;
        }
        let imports = rooms.entry(name.clone()).or_default();
        for file in rust_files(&path) {
            let text = std::fs::read_to_string(&file).unwrap();
            for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (at, _) in line.match_indices("crate::") {
                    let rest = &line[at + "crate::".len()..];
                    let other: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !other.is_empty() && other != name {
                        imports.insert(other);
                    }
                }
            }
        }
    }
    rooms
}

fn rust_files(path: &Path) -> Vec<std::path::PathBuf> {
    if path.is_dir() {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(path).unwrap() {
            files.extend(rust_files(&entry.unwrap().path()));
        }
        files
    } else if path.extension().is_some_and(|e| e == "rs") {
        vec![path.to_path_buf()]
    } else {
        Vec::new()
    }
}

/// A circle of imports through `room`, if any: the path back to it.
fn circle_from(
    rooms: &BTreeMap<String, BTreeSet<String>>,
    room: &str,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    for next in rooms.get(room).into_iter().flatten() {
        if path.first().is_some_and(|start| start == next) {
            let mut circle = path.clone();
            circle.push(next.clone());
            return Some(circle);
        }
        if path.contains(next) {
            continue;
        }
        path.push(next.clone());
        if let Some(circle) = circle_from(rooms, next, path) {
            return Some(circle);
        }
        path.pop();
    }
    None
}

#[test]
fn the_rooms_import_each_other_without_circles() {
    let rooms = room_imports();
    assert!(rooms.len() >= 10, "{rooms:?}");
    for room in rooms.keys() {
        let circle = circle_from(&rooms, room, &mut vec![room.clone()]);
        assert_eq!(circle, None, "a circle of imports");
    }
}

#[test]
fn domain_is_a_leaf() {
    let rooms = room_imports();
    assert_eq!(rooms["domain"], BTreeSet::new());
}
