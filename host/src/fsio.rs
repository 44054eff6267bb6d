//! Writing files so that a crash or a full disk never leaves one half-written, reading text
//! files as people write them, and paths written the short way.

use std::{io::Write, path::Path};

/// Writes `bytes` to `path` through a temporary file in the same folder, flushed to disk and
/// renamed over `path`: readers see the old file or the complete new one.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    // The caller names `path`; tempfile would add the temporary file's name to the message.
    write(path, bytes, mode).map_err(|e| e.raw_os_error().map_or(e, std::io::Error::from_raw_os_error))
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A text file's contents without the UTF-8 byte order mark that some editors (Notepad, Excel's
/// exports) put first: JSON parsers and column names would otherwise see `\u{feff}`.
pub fn read_text(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        write_atomically(&path, b"old", 0o644).unwrap();
        write_atomically(&path, b"new", 0o644).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let missing = dir.path().join("no/such/dir/f");
        assert!(write_atomically(&missing, b"x", 0o644).is_err());
    }
}

/// `path` with `.` and `dir/..` removed, without asking the file system (so a link is not
/// followed): `experiments/../sweeps` is `sweeps`.
pub fn lexically_normal(path: &Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut out = std::path::PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            // Above the root is the root.
            Component::ParentDir if out.has_root() => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod normal_tests {
    use super::lexically_normal;
    use std::path::Path;

    #[test]
    fn dot_dot_and_dot_are_removed_lexically() {
        assert_eq!(lexically_normal(Path::new("/a/b/../c/./d")), Path::new("/a/c/d"));
        assert_eq!(lexically_normal(Path::new("../x/../y")), Path::new("../y"));
        assert_eq!(lexically_normal(Path::new("/..")), Path::new("/"));
    }
}
