//! Vendors the dashboard's chart library, uPlot, from the npm registry at
//! build time: `npm ci` installs exactly what
//! `src/ops/dashboard/web/package-lock.json` pins (its integrity hash
//! checked) into OUT_DIR, and the binary embeds the files
//! (`ORDERFLOW_UPLOT_DIR`), so the page needs no network when it runs.
//! npm's cache makes rebuilds work offline once it has been fetched.

use std::path::{Path, PathBuf};
use std::process::Command;

const WEB: &str = "src/ops/dashboard/web";

fn main() {
    for file in ["package.json", "package-lock.json"] {
        println!("cargo:rerun-if-changed={WEB}/{file}");
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("web");
    let dist = out.join("node_modules/uplot/dist");
    if !installed(&out, &dist) {
        install(&out);
    }
    println!("cargo:rustc-env=ORDERFLOW_UPLOT_DIR={}", dist.display());
}

/// Whether `out` holds an install of the current lock file.
fn installed(out: &Path, dist: &Path) -> bool {
    let lock = |dir: &Path| std::fs::read(dir.join("package-lock.json")).ok();
    lock(Path::new(WEB)).is_some()
        && lock(Path::new(WEB)) == lock(out)
        && dist.join("uPlot.iife.min.js").exists()
        && dist.join("uPlot.min.css").exists()
}

fn install(out: &Path) {
    std::fs::create_dir_all(out).expect("OUT_DIR is writable");
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(Path::new(WEB).join(file), out.join(file))
            .unwrap_or_else(|e| panic!("copying {WEB}/{file}: {e}"));
    }
    let status = Command::new("npm")
        .args([
            "ci",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ])
        .current_dir(out)
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => panic!(
            "`npm ci` for the dashboard's chart library (uPlot) failed ({status}): \
             is the npm registry reachable?"
        ),
        Err(e) => panic!(
            "the dashboard's chart library (uPlot) comes from the npm registry at build \
             time, and npm could not be run ({e}): install Node.js and npm"
        ),
    }
}
