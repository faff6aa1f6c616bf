//! Reader for the CUB-200-2011 / Oxford-102 layout as released with Reed's captions.
//!
//! ```text
//! ROOT/allclasses.txt  trainvalclasses.txt  testclasses.txt   one class name a line
//! ROOT/text_c10/<class>/<image>.txt                            captions, one a line (10)
//! ROOT/images/<class>/<image>.jpg    (CUB; also ROOT/CUB_200_2011/images/...)
//! ROOT/jpg/<image>.jpg               (Oxford-102: one flat folder)
//! ```
//! Classes come from `allclasses.txt` (required); the split from the other two lists (one may be
//! missing: the other side is then "all the rest", and the missing list is reported). Items are
//! the caption files; each is matched to its image by stem. The `shapes` set uses this layout.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::error::{DataError, DataResult};
use super::image_io::is_image_path;
use super::{read_captions, shapes, Class, Dataset, DatasetKind, Item, Problem, ProblemKind, Split};

/// Opens a CUB/Oxford-102 layout at `root`.
pub fn open(root: &Path) -> DataResult<Dataset> {
    if !root.is_dir() {
        return Err(DataError::MissingFolder { path: root.to_path_buf() });
    }
    let mut problems = Vec::new();
    let all_path = root.join("allclasses.txt");
    let all = read_class_list(&all_path)?.ok_or(DataError::MissingClassList { path: all_path })?;
    let classes = assign_splits(root, &all, &mut problems)?;
    let text_dir = root.join("text_c10");
    if !text_dir.is_dir() {
        return Err(DataError::MissingFolder { path: text_dir });
    }
    let images = find_image_dir(root)?;
    let mut items = Vec::new();
    let mut used: HashSet<PathBuf> = HashSet::new();
    for (id, class) in classes.iter().enumerate() {
        read_class(&text_dir, &images, id, &class.name, &mut items, &mut used, &mut problems)?;
    }
    report_uncaptioned(&images, &classes, &used, &mut problems)?;
    let kind = if root.join(shapes::META_FILE).is_file() { DatasetKind::Shapes } else { DatasetKind::Cub };
    Ok(Dataset::from_parts(root.to_path_buf(), kind, classes, items, problems))
}

/// Reads a class list: one name a line, blank lines skipped; a line "7 007.Parakeet_Auklet" (the
/// CUB `classes.txt` form) gives its last field. `None` when the file does not exist.
pub fn read_class_list(path: &Path) -> DataResult<Option<Vec<String>>> {
    let text = match fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DataError::io(path, e)),
    };
    Ok(Some(text.lines().filter_map(|l| l.split_whitespace().last()).map(str::to_string).collect()))
}

fn assign_splits(root: &Path, all: &[String], problems: &mut Vec<Problem>) -> DataResult<Vec<Class>> {
    if all.is_empty() {
        return Err(DataError::Empty { path: root.join("allclasses.txt"), reason: "class list is empty".into() });
    }
    let tv_path = root.join("trainvalclasses.txt");
    let test_path = root.join("testclasses.txt");
    let trainval = read_class_list(&tv_path)?;
    let test = read_class_list(&test_path)?;
    let known: HashSet<&str> = all.iter().map(String::as_str).collect();
    for (list, path) in [(&trainval, &tv_path), (&test, &test_path)] {
        match list {
            None => problems.push(Problem::new(
                path,
                ProblemKind::MissingClassList,
                "class list not found; its classes are taken as all the others",
            )),
            Some(names) => {
                for n in names.iter().filter(|n| !known.contains(n.as_str())) {
                    problems.push(Problem::new(
                        path,
                        ProblemKind::BadClassList,
                        format!("class {n:?} is not in allclasses.txt; ignored"),
                    ));
                }
            }
        }
    }
    let tv: Option<HashSet<&str>> = trainval.as_ref().map(|v| v.iter().map(String::as_str).collect());
    let te: Option<HashSet<&str>> = test.as_ref().map(|v| v.iter().map(String::as_str).collect());
    let mut classes = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for name in all {
        if !seen.insert(name.as_str()) {
            problems.push(Problem::new(
                root.join("allclasses.txt"),
                ProblemKind::BadClassList,
                format!("class {name:?} is listed twice; the repeat is ignored"),
            ));
            continue;
        }
        let in_tv = tv.as_ref().map(|s| s.contains(name.as_str()));
        let in_te = te.as_ref().map(|s| s.contains(name.as_str()));
        let split = match (in_tv, in_te) {
            (_, Some(true)) => Split::HeldOut,
            (Some(true), _) | (None, Some(false)) | (None, None) => Split::TrainVal,
            (Some(false), None) => Split::HeldOut,
            (Some(false), Some(false)) => {
                problems.push(Problem::new(
                    root.join("allclasses.txt"),
                    ProblemKind::BadClassList,
                    format!("class {name:?} is in neither trainvalclasses.txt nor testclasses.txt; ignored"),
                ));
                continue;
            }
        };
        if in_tv == Some(true) && in_te == Some(true) {
            problems.push(Problem::new(
                &tv_path,
                ProblemKind::BadClassList,
                format!("class {name:?} is also in testclasses.txt; held out"),
            ));
        }
        classes.push(Class { name: name.clone(), split });
    }
    Ok(classes)
}

/// Where the images are: `images/`, `jpg/` or `CUB_200_2011/images/`.
#[derive(Clone, Debug)]
enum ImageDir {
    /// `<dir>/<class>/<image>`.
    PerClass(PathBuf),
    /// `<dir>/<image>` (Oxford-102's `jpg/`), the image files indexed by stem.
    Flat(HashMap<String, PathBuf>),
}

fn find_image_dir(root: &Path) -> DataResult<ImageDir> {
    for dir in [root.join("images"), root.join("CUB_200_2011").join("images")] {
        if dir.is_dir() {
            return Ok(ImageDir::PerClass(dir));
        }
    }
    let jpg = root.join("jpg");
    if jpg.is_dir() {
        let mut index = HashMap::new();
        for path in list_dir(&jpg)?.into_iter().filter(|p| is_image_path(p)) {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                index.insert(stem.to_string(), path.clone());
            }
        }
        return Ok(ImageDir::Flat(index));
    }
    Err(DataError::MissingFolder { path: root.join("images") })
}

/// Sorted entries of a folder.
pub(crate) fn list_dir(dir: &Path) -> DataResult<Vec<PathBuf>> {
    let rd = fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut out = Vec::new();
    for entry in rd {
        out.push(entry.map_err(|e| DataError::io(dir, e))?.path());
    }
    out.sort();
    Ok(out)
}

/// The image beside a caption stem, trying the usual extensions.
fn find_image(images: &ImageDir, class: &str, stem: &str) -> Option<PathBuf> {
    match images {
        ImageDir::Flat(index) => index.get(stem).cloned(),
        ImageDir::PerClass(dir) => ["jpg", "png", "jpeg", "JPG", "PNG", "JPEG", "bmp", "gif", "webp"]
            .iter()
            .map(|ext| dir.join(class).join(format!("{stem}.{ext}")))
            .find(|p| p.is_file()),
    }
}

#[allow(clippy::too_many_arguments)]
fn read_class(
    text_dir: &Path,
    images: &ImageDir,
    id: usize,
    class: &str,
    items: &mut Vec<Item>,
    used: &mut HashSet<PathBuf>,
    problems: &mut Vec<Problem>,
) -> DataResult<()> {
    let dir = text_dir.join(class);
    if !dir.is_dir() {
        problems.push(Problem::new(&dir, ProblemKind::MissingFolder, "caption folder of a listed class not found"));
        return Ok(());
    }
    let txts = list_dir(&dir)?;
    for txt in txts.iter().filter(|p| p.extension().is_some_and(|e| e == "txt")) {
        let Some(stem) = txt.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let Some(image) = find_image(images, class, stem) else {
            problems.push(Problem::new(txt, ProblemKind::MissingImage, "captions without an image"));
            continue;
        };
        used.insert(image.clone());
        match read_captions(txt) {
            Ok(captions) => items.push(Item { image, class: id, captions }),
            Err(p) => problems.push(p),
        }
    }
    Ok(())
}

/// Reports image files that no caption file points at.
fn report_uncaptioned(
    images: &ImageDir,
    classes: &[Class],
    used: &HashSet<PathBuf>,
    problems: &mut Vec<Problem>,
) -> DataResult<()> {
    let mut candidates: BTreeSet<PathBuf> = BTreeSet::new();
    match images {
        ImageDir::Flat(index) => candidates.extend(index.values().cloned()),
        ImageDir::PerClass(dir) => {
            for class in classes {
                let cdir = dir.join(&class.name);
                if cdir.is_dir() {
                    candidates.extend(list_dir(&cdir)?.into_iter().filter(|p| is_image_path(p)));
                }
            }
        }
    }
    for path in candidates.into_iter().filter(|p| !used.contains(p)) {
        problems.push(Problem::new(path, ProblemKind::NoCaptions, "image without a caption file"));
    }
    Ok(())
}
