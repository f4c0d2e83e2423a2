//! Oob applications built into the image, started by name with `companion.app=NAME` on the
//! command line: alone (`cargo xtask run --no-guest --app NAME`), or beside the Linux guest
//! when the command line also boots one (then they may talk to Linux over channels).
//!
//! To add one: write a module here that uses only [`crate::rt`], with `run`, `start` and
//! `report` functions, and list it in [`APPS`].

pub mod example;

/// An application: its name and its entry point, called on the boot CPU's in-band stage
/// with the `companion.app.*` options; it returns when the application is done.
pub struct App {
    /// The name given to `companion.app=`.
    pub name: &'static str,
    /// One line saying what it does.
    pub summary: &'static str,
    /// Runs the application to completion.
    pub run: fn(&Options<'_>) -> Result<(), alloc::string::String>,
    /// Starts it beside the guest, before the guest boots; returns once its threads run.
    pub start: fn(&Options<'_>) -> Result<(), alloc::string::String>,
    /// Prints its own account at the end of a run beside the guest.
    pub report: fn(),
}

/// The application started beside the guest, if any.
static STARTED: spin::Once<&'static App> = spin::Once::new();

/// Starts `app` beside the guest (see [`App::start`]) and remembers it for [`report`].
pub fn start(app: &'static App, options: &Options<'_>) -> Result<(), alloc::string::String> {
    (app.start)(options)?;
    STARTED.call_once(|| app);
    Ok(())
}

/// The account of the application started beside the guest, if one was (the end of the run).
pub fn report() {
    if let Some(app) = STARTED.get() {
        (app.report)();
    }
}

/// The `companion.app.KEY=VALUE` options of the command line.
pub struct Options<'a> {
    lookup: &'a dyn Fn(&str) -> Option<&'a str>,
}

impl<'a> Options<'a> {
    /// Options read through `lookup` (which gets the full key, `companion.app.KEY`).
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<&'a str>) -> Self {
        Self { lookup }
    }

    /// The number given for `companion.app.KEY`, or `default`; a value that is not a number
    /// is an error naming the key.
    pub fn number(&self, key: &str, default: u64) -> Result<u64, OptionError> {
        let full = alloc::format!("companion.app.{key}");
        match (self.lookup)(&full) {
            None => Ok(default),
            Some(text) => text.parse().map_err(|_| OptionError { key: full, value: alloc::string::String::from(text) }),
        }
    }
}

/// A `companion.app.*` option whose value could not be used.
#[derive(Debug)]
pub struct OptionError {
    /// The key.
    pub key: alloc::string::String,
    /// The value given.
    pub value: alloc::string::String,
}

impl core::fmt::Display for OptionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}={}: not a number", self.key, self.value)
    }
}

/// Every application in the image.
pub const APPS: &[App] = &[example::APP];

/// The application called `name`.
pub fn find(name: &str) -> Option<&'static App> {
    APPS.iter().find(|app| app.name == name)
}
