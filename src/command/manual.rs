//! `exwatch completions` and `exwatch man`: the shell completion scripts and the man
//! pages, both made from the flags' definitions (the binary's clap command).

use clap::Command;

use super::Error;

/// The completion script for `shell`.
pub fn completions(mut root: Command, shell: clap_complete::Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut root, "exwatch", &mut out);
    out
}

/// The man page of exwatch, or with `command` that command's page, exwatch-COMMAND(1).
pub fn man_page(mut root: Command, command: Option<&str>) -> Result<Vec<u8>, Error> {
    root.build();
    let page = match command {
        None => root,
        Some(name) => {
            let names: Vec<String> =
                root.get_subcommands().map(|c| c.get_name().to_string()).filter(|n| n != "help").collect();
            let sub = root
                .find_subcommand(name)
                .filter(|_| name != "help")
                .ok_or_else(|| format!("man {name}: no such command (one of {})", names.join(", ")))?;
            // Its page is exwatch-NAME(1), and its usage line says `exwatch NAME`.
            sub.clone()
                .name(format!("exwatch-{name}"))
                .bin_name(format!("exwatch {name}"))
                .version(root.get_version().unwrap_or_default().to_string())
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page).render(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}
