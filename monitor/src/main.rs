use clap::Parser;
use monitor::{
    cli::{Cli, Command},
    demo, error, live, output, replay, report,
};

/// Prints `err` as the command line promises (see `error::message`) and exits.
fn exit_with(err: &anyhow::Error) -> ! {
    let (text, code) = error::message(err);
    output::status(&text);
    std::process::exit(code)
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // `--help` and `--version`: printed on stdout, exit 0, as clap does.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let args: Vec<String> = std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            exit_with(&anyhow::Error::from(error::from_clap(&e, &args)));
        }
    };
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(async {
                match cli.command {
                    Command::Live(args) => live::run(args).await,
                    Command::Replay(args) => replay::run(args).await,
                    Command::Demo(args) => demo::run(args).await,
                    Command::Report(args) => report::run(args),
                }
            })
        });
    if let Err(e) = result {
        exit_with(&e);
    }
}
