//! `predict-tags`: tags a product's reviews, or a whole product table, with a model bundle.
//! The seed's interface, kept as it was; the code is `lamoda_predict`, which
//! `lamoda-tags predict` shares.

fn main() -> std::process::ExitCode {
    lamoda_predict::main()
}
