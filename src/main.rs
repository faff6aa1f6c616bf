//! The `text2img` command line.

fn main() {
    println!("text2img");
}
