//! `lamoda-tags serve`: the tagging API and the explorer, with `lamoda-server`'s flags.

use lamoda_server::ServeArgs;

use crate::common::ProjectLookup;

/// Runs `lamoda-tags serve`. Without `--model` (or `LAMODA_MODEL`) the server takes the
/// project's `adapters/` bundle when a project is found, else looks for a checkout's as
/// `lamoda-server` does.
pub fn serve(mut args: ServeArgs, lookup: &ProjectLookup) -> anyhow::Result<()> {
    if args.model.is_none()
        && let Ok(project) = lookup.project()
        && project.adapters_dir().join("bundle.json").is_file()
    {
        args.model = Some(project.adapters_dir());
    }
    Ok(lamoda_server::app_main(&args)?)
}
