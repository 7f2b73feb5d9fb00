//! `agentgrid completions` and `agentgrid man`: the shell's and `man`'s views of the grammar in
//! `cli.rs`, generated from it so that they never fall behind a new flag.

use std::path::Path;

use crate::user_error;

pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<u8> {
    let mut cmd = crate::parse::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "agentgrid", &mut script);
    crate::output::bytes(&script);
    Ok(crate::exit::OK)
}

/// The top page on standard output, or with `dir` one page per command and sub-command
/// (`agentgrid-task-add.1`), named as `man` finds them under `man1/`.
pub fn man(dir: Option<&Path>) -> anyhow::Result<u8> {
    let cmd = crate::parse::command();
    let Some(dir) = dir else {
        let mut page = Vec::new();
        page_of(cmd).render(&mut page)?;
        crate::output::bytes(&page);
        return Ok(crate::exit::OK);
    };
    std::fs::create_dir_all(dir).map_err(|e| {
        user_error(format!(
            "cannot create {}: {e}; give --dir a directory you can write",
            dir.display()
        ))
    })?;
    let mut written = 0usize;
    write_pages(cmd, "agentgrid", dir, &mut written)?;
    outln!("wrote {written} manual pages to {}", dir.display());
    Ok(crate::exit::OK)
}

fn write_pages(
    cmd: clap::Command,
    name: &str,
    dir: &Path,
    written: &mut usize,
) -> anyhow::Result<()> {
    // The page's title is the command as typed (`agentgrid task add`), its file name the
    // dashed form `man agentgrid-task-add` looks for.
    let cmd = cmd
        .display_name(name.to_string())
        .bin_name(name.replace('-', " "));
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    page_of(cmd.clone()).render(&mut page)?;
    std::fs::write(&path, page)
        .map_err(|e| user_error(format!("cannot write {}: {e}", path.display())))?;
    *written += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let sub_name = format!("{name}-{}", sub.get_name());
        write_pages(sub.clone(), &sub_name, dir, written)?;
    }
    Ok(())
}

/// Every page names the program and its version as its source, sub-commands included.
fn page_of(cmd: clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd).source(format!("agentgrid {}", env!("CARGO_PKG_VERSION")))
}
