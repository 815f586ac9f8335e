//! Hostile config.json and process.json, at the library level: the functions the fuzz targets
//! run, the seed corpora they start from, and the defences found by the hostile cases.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use berth::bundle::{self, parse_config};
use berth::exec::parse_process;

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut v: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.display().to_string(), fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no seeds in {}", dir.display());
    v
}

/// The seeds are the shapes berth must accept: a seed that fails starts the fuzzer in the
/// rejection paths only.
#[test]
fn config_seeds_are_accepted() {
    for (name, data) in seeds("config") {
        if let Err(e) = parse_config(&data) {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn process_seeds_are_accepted() {
    for (name, data) in seeds("process") {
        if let Err(e) = parse_process(&data) {
            panic!("{name}: {e}");
        }
    }
}

/// JSON is UTF-8 with valid escapes; anything else is a parse error naming the file.
#[test]
fn malformed_json_names_the_file() {
    let base = br#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},
 "process":{"cwd":"/","args":["MARK"],"user":{"uid":0,"gid":0}},
 "linux":{"namespaces":[{"type":"mount"}]}}"#;
    let spliced = |with: &[u8]| -> Vec<u8> {
        let at = base.windows(4).position(|w| w == b"MARK").unwrap();
        [&base[..at], with, &base[at + 4..]].concat()
    };
    assert!(parse_config(&spliced(b"sh")).is_ok());
    for bad in [&b"\xff\xfe"[..], b"\\udc80", b"\\ud800", b"\\q", b"\x00"] {
        let e = parse_config(&spliced(bad)).unwrap_err().to_string();
        assert!(e.contains("config.json"), "{bad:?}: {e}");
    }
    for bad in [&b""[..], b"null", b"{", b"{\"ociVersion\": 1}"] {
        let e = parse_config(bad).unwrap_err().to_string();
        assert!(e.contains("config.json"), "{bad:?}: {e}");
    }
    // serde takes a struct from an array of its fields too; an empty one is a spec with no
    // version, refused as such.
    let e = parse_config(b"[]").unwrap_err().to_string();
    assert!(e.contains("ociVersion"), "{e}");
    let e = parse_process(b"{\"args\":[\"\\udc80\"],\"cwd\":\"/\"}")
        .unwrap_err()
        .to_string();
    assert!(e.contains("process.json"), "{e}");
    let e = parse_process(b"{\"args\":[],\"cwd\":\"/\",\"user\":{\"uid\":0,\"gid\":0}}")
        .unwrap_err()
        .to_string();
    assert!(e.contains("process.args"), "{e}");
    let e = parse_process(b"{\"args\":[\"sh\"],\"cwd\":\"rel\",\"user\":{\"uid\":0,\"gid\":0}}")
        .unwrap_err()
        .to_string();
    assert!(e.contains("process.cwd"), "{e}");
}

/// A FIFO named as a namespace file: opening it would wait for a writer forever. The check
/// runs in a thread so that a regression fails the test instead of hanging it.
#[test]
fn namespace_path_fifo_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let config = serde_json::json!({
        "ociVersion": "1.0.2", "root": {"path": "rootfs"},
        "process": {"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0}},
        "linux": {"namespaces": [{"type": "mount"}, {"type": "network", "path": fifo}]}
    })
    .to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(parse_config(config.as_bytes()).map(|_| ()));
    });
    let r = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("validation blocked on the FIFO");
    let e = r.unwrap_err().to_string();
    assert!(e.contains("linux.namespaces") && e.contains("FIFO"), "{e}");
}

fn bundle_with_root(path: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("rootfs")).unwrap();
    let config = serde_json::json!({
        "ociVersion": "1.0.2", "root": {"path": path},
        "process": {"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0}},
        "linux": {"namespaces": [{"type": "mount"}]}
    });
    fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}

/// As runc: root.path is the real path of the rootfs, or refused.
#[test]
fn rootfs_through_a_symlink_is_refused() {
    let ok = bundle_with_root("rootfs");
    assert!(bundle::load(ok.path()).is_ok());
    // `.` and `..` are resolved as text, so these name the same real directory.
    let dotted = bundle_with_root("./x/../rootfs/.");
    fs::create_dir(dotted.path().join("x")).unwrap();
    assert!(bundle::load(dotted.path()).is_ok());

    let linked = bundle_with_root("link");
    symlink("rootfs", linked.path().join("link")).unwrap();
    let e = bundle::load(linked.path())
        .err()
        .expect("accepted")
        .to_string();
    assert!(e.contains("root.path") && e.contains("symlink"), "{e}");

    let inner = bundle_with_root("via/rootfs");
    symlink(".", inner.path().join("via")).unwrap();
    let e = bundle::load(inner.path())
        .err()
        .expect("accepted")
        .to_string();
    assert!(e.contains("root.path") && e.contains("symlink"), "{e}");
}

/// A bundle path that is not UTF-8 cannot be recorded in the state: refused up front, naming
/// the bundle, instead of failing when the state is written.
#[test]
fn bundle_path_not_utf8_is_refused() {
    use std::os::unix::ffi::OsStrExt;
    let top = bundle_with_root("rootfs");
    let odd = top.path().join(std::ffi::OsStr::from_bytes(b"bundle-\xff"));
    fs::create_dir(&odd).unwrap();
    fs::rename(top.path().join("rootfs"), odd.join("rootfs")).unwrap();
    fs::rename(top.path().join("config.json"), odd.join("config.json")).unwrap();
    let e = bundle::load(&odd).err().expect("accepted").to_string();
    assert!(e.contains("bundle") && e.contains("UTF-8"), "{e}");
}
