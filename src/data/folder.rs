//! Reader for a plain folder of images, each with a same-named `.txt` of captions beside it.
//!
//! ```text
//! ROOT/cat.jpg + ROOT/cat.txt              an image in the root is a class of its own
//! ROOT/<class>/dog1.png + dog1.txt          images in a sub-folder share that class
//! ROOT/testclasses.txt                      optional: classes held out (default: none)
//! ```
//! One level of sub-folders is read. `.txt` files without an image are reported, as are images
//! without captions.

use std::collections::HashSet;
use std::path::Path;

use super::error::{DataError, DataResult};
use super::image_io::is_image_path;
use super::layout::{list_dir, read_class_list};
use super::{read_captions, Class, Dataset, DatasetKind, Item, Problem, ProblemKind, Split};

/// Names of text files in the root that are not captions.
const RESERVED_TXT: [&str; 4] = ["allclasses.txt", "trainvalclasses.txt", "testclasses.txt", "README.txt"];

/// Opens a caption folder at `root`.
pub fn open(root: &Path) -> DataResult<Dataset> {
    if !root.is_dir() {
        return Err(DataError::MissingFolder { path: root.to_path_buf() });
    }
    let held_out: HashSet<String> =
        read_class_list(&root.join("testclasses.txt"))?.unwrap_or_default().into_iter().collect();
    let mut b = Builder::default();
    for entry in list_dir(root)? {
        if entry.is_dir() {
            let name = entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            b.read_dir(&entry, Some(&name))?;
        }
    }
    b.read_dir(root, None)?;
    let classes = b
        .class_names
        .into_iter()
        .map(|name| Class { split: if held_out.contains(&name) { Split::HeldOut } else { Split::TrainVal }, name })
        .collect();
    Ok(Dataset::from_parts(root.to_path_buf(), DatasetKind::Folder, classes, b.items, b.problems))
}

#[derive(Default)]
struct Builder {
    class_names: Vec<String>,
    items: Vec<Item>,
    problems: Vec<Problem>,
}

impl Builder {
    fn class_id(&mut self, name: &str) -> usize {
        if let Some(i) = self.class_names.iter().rposition(|n| n == name) {
            return i;
        }
        self.class_names.push(name.to_string());
        self.class_names.len() - 1
    }

    /// Reads the images of one folder; `class` is `None` for the root (one class per image).
    fn read_dir(&mut self, dir: &Path, class: Option<&str>) -> DataResult<()> {
        let entries = list_dir(dir)?;
        let mut stems_with_image: HashSet<String> = HashSet::new();
        for path in entries.iter().filter(|p| p.is_file() && is_image_path(p)) {
            let stem = stem_of(path);
            stems_with_image.insert(stem.clone());
            let txt = path.with_extension("txt");
            if !txt.exists() {
                self.problems.push(Problem::new(
                    path,
                    ProblemKind::NoCaptions,
                    format!("image without captions ({} not found)", file_name(&txt)),
                ));
                continue;
            }
            match read_captions(&txt) {
                Ok(captions) => {
                    let id = self.class_id(class.unwrap_or(&stem));
                    self.items.push(Item { image: path.clone(), class: id, captions });
                }
                Err(p) => self.problems.push(p),
            }
        }
        for txt in entries.iter().filter(|p| is_caption_file(p, class.is_none())) {
            if !stems_with_image.contains(&stem_of(txt)) {
                self.problems.push(Problem::new(txt, ProblemKind::MissingImage, "captions without an image"));
            }
        }
        Ok(())
    }
}

fn stem_of(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

fn is_caption_file(path: &Path, in_root: bool) -> bool {
    path.is_file()
        && path.extension().is_some_and(|e| e == "txt")
        && !(in_root && RESERVED_TXT.contains(&file_name(path).as_str()))
}
