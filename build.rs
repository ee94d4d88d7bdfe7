//! Records the git revision the binary is built from as `BUILD_GIT_REVISION`, for
//! the startup log line: `$GIT_REVISION` if set (the Dockerfile passes it, as
//! its build context has no `.git`), else `git rev-parse`, else "unknown".
//!
//! On Linux with glibc 2.36 or later it also links the binary with packed relative
//! relocations (DT_RELR), and says so to the tests (`BUILD_PACKED_RELOCS`).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// The build host's glibc version: `ldd --version`'s first line ends with it
/// ("ldd (Debian GLIBC 2.36-9+deb12u14) 2.36").
fn host_glibc() -> Option<(u32, u32)> {
    let out = Command::new("ldd").arg("--version").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let (major, minor) = text.lines().next()?.rsplit(' ').next()?.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Packed relative relocations: a position-independent binary holds about 32,000
/// pointers to fix at load time (57,000 while chrono-tz's tables were in it). As RELA
/// entries they take 0.8 MB that the loader reads at every start and that then stays
/// resident; packed, 9 KB (BENCHMARKS.md, sessions 12 and 13). Such a binary needs glibc
/// 2.36 or later, so only when building for the host itself, a Linux glibc of that age.
fn pack_relative_relocations() {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let native = var("HOST") == var("TARGET");
    let linux_gnu = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    if native && linux_gnu && host_glibc().is_some_and(|v| v >= (2, 36)) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
        println!("cargo:rustc-env=BUILD_PACKED_RELOCS=1");
    }
}

fn main() {
    pack_relative_relocations();
    println!("cargo:rerun-if-env-changed=GIT_REVISION");
    println!("cargo:rerun-if-changed=build.rs");
    let revision = std::env::var("GIT_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| {
            // Rebuild when HEAD moves: HEAD itself (a branch switch) and the ref it names.
            for file in ["HEAD", "refs/heads"] {
                if let Some(path) = git(&["rev-parse", "--git-path", file]) {
                    println!("cargo:rerun-if-changed={path}");
                }
            }
            if let Some(common) = git(&["rev-parse", "--git-common-dir"]) {
                println!("cargo:rerun-if-changed={common}/refs/heads");
            }
            git(&["rev-parse", "--short=12", "HEAD"])
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=BUILD_GIT_REVISION={revision}");
}
