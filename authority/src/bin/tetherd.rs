//! `tetherd`: the Tether license authority daemon. All of it is in the
//! library ([`tether_authority::main`]), so `tether tetherd` runs the same code.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    tether_authority::main(std::env::args_os())
}
