//! The files a profile needs to boot, built or fetched at most once per
//! xtask run: the core's image for each board and the boards' device trees.
//! Failures are remembered too, so a broken build is not retried per case.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Result, anyhow};

use crate::image::{self, Board, BootImage, BuildProfile};
use crate::linux_package::LinuxPackage;
use crate::profiles::Profile;
use crate::toolchain::Toolchain;

/// A memoized outcome; errors are kept as their rendered message.
type Memo<T> = Option<Result<T, String>>;

/// Lazily built and fetched boot files.
#[derive(Debug)]
pub struct Assets {
    build: BuildProfile,
    toolchain: Memo<Toolchain>,
    images: HashMap<Board, Memo<BootImage>>,
    linux: Memo<LinuxPackage>,
}

/// The files one boot uses.
#[derive(Debug, Clone)]
pub struct BootFiles {
    /// The core's image for the profile's board.
    pub image: BootImage,
    /// The profile's device tree, if it names one.
    pub dtb: Option<PathBuf>,
}

impl Assets {
    /// Nothing built yet; images will use the `build` cargo profile.
    pub fn new(build: BuildProfile) -> Self {
        Self {
            build,
            toolchain: None,
            images: HashMap::new(),
            linux: None,
        }
    }

    /// The image and device tree `profile` boots with.
    pub fn for_profile(&mut self, profile: &Profile) -> Result<BootFiles> {
        let image = self.image(profile.board)?;
        let dtb = profile
            .dtb
            .as_deref()
            .map(|name| self.dtb(name))
            .transpose()?;
        Ok(BootFiles { image, dtb })
    }

    /// The core's image for `board`, built on first use.
    pub fn image(&mut self, board: Board) -> Result<BootImage> {
        let build = self.build;
        let toolchain = &mut self.toolchain;
        memoize(self.images.entry(board).or_default(), || {
            let toolchain = memoize(toolchain, Toolchain::ensure_installed)?;
            image::build(&toolchain, board, build)
        })
    }

    /// A device tree from Debian's arm64 kernel package, fetched on first use.
    fn dtb(&mut self, name: &str) -> Result<PathBuf> {
        memoize(&mut self.linux, LinuxPackage::fetch)?.dtb(name)
    }
}

/// Returns the memoized outcome of `make`, running it the first time.
fn memoize<T: Clone>(memo: &mut Memo<T>, make: impl FnOnce() -> Result<T>) -> Result<T> {
    memo.get_or_insert_with(|| make().map_err(|err| format!("{err:#}")))
        .clone()
        .map_err(|err| anyhow!(err))
}
