//! Build script of betterpg-ffi: what makes `libbetterpg` a proper C
//! library, derived from Cargo's metadata (nothing written by hand).
//!
//! - The shared library's SONAME, `libbetterpg.so.<major>` (ELF targets):
//!   programs linked against it record that name, so an install can keep
//!   ABI-incompatible majors side by side. The ABI promise is in the README.
//! - Next to the library in `target/<profile>/`: the symbolic link
//!   `libbetterpg.so.<major>` -> `libbetterpg.so`, so a program linked
//!   against the uninstalled build finds the library by its SONAME.
//! - Two pkg-config files in `target/<profile>/pkgconfig/`:
//!   `betterpg-uninstalled.pc` for this uninstalled build (pkg-config
//!   prefers it when its directory is on `PKG_CONFIG_PATH`) and
//!   `betterpg.pc` for an install under `$BETTERPG_PREFIX` (default
//!   `/usr/local`: `lib/`, `include/`). Packagers using cargo-c get the same
//!   names from `[package.metadata.capi]` in Cargo.toml.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BETTERPG_PREFIX");

    let var = |k: &str| env::var(k).unwrap_or_default();
    let major = var("CARGO_PKG_VERSION_MAJOR");
    let version = var("CARGO_PKG_VERSION");
    let target_os = var("CARGO_CFG_TARGET_OS");
    let elf = !matches!(target_os.as_str(), "macos" | "ios" | "windows");
    let soname = format!("libbetterpg.so.{major}");
    if elf {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    }

    // target/<profile>/build/betterpg-ffi-<hash>/out -> target/<profile>
    let out_dir = PathBuf::from(var("OUT_DIR"));
    let Some(profile_dir) = profile_dir(&out_dir) else {
        println!(
            "cargo:warning=OUT_DIR {} is not under target/<profile>/build: no pkg-config files written",
            out_dir.display()
        );
        return;
    };
    if elf {
        let link = profile_dir.join(&soname);
        // Relative, so the build directory can move; dangling until the
        // library is linked, right after this script.
        if fs::read_link(&link).ok().as_deref() != Some(Path::new("libbetterpg.so")) {
            let _ = fs::remove_file(&link);
            if let Err(e) = std::os::unix::fs::symlink("libbetterpg.so", &link) {
                println!("cargo:warning=cannot link {}: {e}", link.display());
            }
        }
    }

    let include_dir = PathBuf::from(var("CARGO_MANIFEST_DIR")).join("include");
    let prefix = env::var("BETTERPG_PREFIX").unwrap_or_else(|_| "/usr/local".into());
    let common = PcCommon {
        description: var("CARGO_PKG_DESCRIPTION"),
        url: var("CARGO_PKG_REPOSITORY"),
        version,
        libs_private: native_static_libs(&target_os, &var("CARGO_CFG_TARGET_ENV")),
    };
    let pc_dir = profile_dir.join("pkgconfig");
    let files = [
        (
            "betterpg-uninstalled.pc",
            common.render(
                "the uninstalled build in this directory's parent",
                &[
                    ("libdir", profile_dir.display().to_string()),
                    ("includedir", include_dir.display().to_string()),
                ],
            ),
        ),
        (
            "betterpg.pc",
            common.render(
                "an install under $BETTERPG_PREFIX",
                &[
                    ("prefix", prefix),
                    ("libdir", "${prefix}/lib".into()),
                    ("includedir", "${prefix}/include".into()),
                ],
            ),
        ),
    ];
    if let Err(e) = fs::create_dir_all(&pc_dir) {
        println!("cargo:warning=cannot create {}: {e}", pc_dir.display());
        return;
    }
    for (name, text) in files {
        let path = pc_dir.join(name);
        // Rewrite only on change: pkg-config files of a running build are
        // read by other tools.
        if fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            if let Err(e) = fs::write(&path, text) {
                println!("cargo:warning=cannot write {}: {e}", path.display());
            }
        }
    }
}

/// `target/<profile>` from `target/<profile>/build/<pkg>-<hash>/out`.
fn profile_dir(out_dir: &Path) -> Option<PathBuf> {
    let build = out_dir.ancestors().nth(2)?;
    (build.file_name()? == "build").then(|| build.parent().map(Path::to_path_buf))?
}

/// The system libraries Rust's standard library needs when the static
/// archive is linked into a C program (what `rustc --print
/// native-static-libs` says; scripts/test-ffi.sh checks they agree).
fn native_static_libs(os: &str, env: &str) -> String {
    match (os, env) {
        ("linux", "gnu") => "-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc",
        ("linux", "musl") => "-lc",
        ("macos", _) => "-lSystem -lc -lm",
        ("freebsd", _) => "-lexecinfo -lpthread -lgcc_s -lc -lm -lrt -lutil",
        _ => "",
    }
    .to_string()
}

/// What both pkg-config files share.
struct PcCommon {
    description: String,
    url: String,
    version: String,
    libs_private: String,
}

impl PcCommon {
    fn render(&self, what: &str, vars: &[(&str, String)]) -> String {
        let mut s = format!(
            "# Generated by betterpg-ffi's build.rs from Cargo.toml for {what}; do not edit.\n"
        );
        for (k, v) in vars {
            s.push_str(&format!("{k}={v}\n"));
        }
        s.push_str("\nName: betterpg\n");
        s.push_str(&format!("Description: {}\n", self.description));
        if !self.url.is_empty() {
            s.push_str(&format!("URL: {}\n", self.url));
        }
        s.push_str(&format!("Version: {}\n", self.version));
        s.push_str("Cflags: -I${includedir}\n");
        s.push_str("Libs: -L${libdir} -lbetterpg\n");
        s.push_str(&format!("Libs.private: {}\n", self.libs_private));
        s
    }
}
