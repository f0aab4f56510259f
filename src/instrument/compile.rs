//! From a parsed definition to a [`Study`]: every lint (duplicate ids,
//! codes that cannot pool across forms, bad scales and options, relevance
//! conditions that do not parse or form cycles, unknown dimensions) with the
//! line of its form or item, and the indexes the rest of fieldwatch reads.

use super::{
    CodeInfo, Dim, DimensionSource, EligibilityEstimate, Expr, FieldworkDef, Form, HashMap, Item, KindDef,
    Problem, Study, StudyDef, is_label_safe, quota,
};

/// Line numbers of forms and items, found by scanning the text for `id:`
/// keys in document order (forms and items are the only mappings with `id`).
pub(super) struct IdLines {
    forms: Vec<usize>,
    items: Vec<Vec<usize>>,
    dims: usize,
    quotas: usize,
}

impl IdLines {
    pub(super) fn scan(src: &str, def: &StudyDef) -> IdLines {
        let id_lines: Vec<usize> = src
            .lines()
            .enumerate()
            .filter(|(_, l)| {
                // Block style (`- id: q1`) and flow style (`- {id: q1, ...}`).
                let t = l.trim_start().trim_start_matches("- ").trim_start();
                let t = t.strip_prefix('{').map_or(t, str::trim_start);
                t.starts_with("id:")
            })
            .map(|(n, _)| n + 1)
            .collect();
        let expected: usize = def.forms.iter().map(|f| 1 + f.items.len()).sum();
        let mut forms = Vec::new();
        let mut items = Vec::new();
        let mut k = 0;
        for f in &def.forms {
            let take = |k: usize| if id_lines.len() == expected { id_lines[k] } else { 0 };
            forms.push(take(k));
            k += 1;
            let mut its = Vec::new();
            for _ in &f.items {
                its.push(take(k));
                k += 1;
            }
            items.push(its);
        }
        let dims = src.lines().position(|l| l.starts_with("dimensions:")).map(|n| n + 1).unwrap_or(0);
        let quotas = src.lines().position(|l| l.starts_with("quotas:")).map(|n| n + 1).unwrap_or(0);
        IdLines { forms, items, dims, quotas }
    }
}

impl IdLines {
    /// For a definition built in code (the XLSForm importer): forms, their
    /// items, then the dimensions and the quotas numbered 1, 2, 3... in
    /// document order from 2 (lines 0 and 1 stay the study's own), so a
    /// problem's `line` says which part it is about.
    pub(super) fn numbered(def: &StudyDef) -> IdLines {
        let mut k = 1;
        let mut next = || {
            k += 1;
            k
        };
        let mut forms = Vec::new();
        let mut items = Vec::new();
        for f in &def.forms {
            forms.push(next());
            items.push(f.items.iter().map(|_| next()).collect());
        }
        let dims = next();
        let quotas = next();
        IdLines { forms, items, dims, quotas }
    }

    /// The line of form `fi`.
    pub(super) fn form(&self, fi: usize) -> Option<usize> {
        self.forms.get(fi).copied()
    }
    /// The lines of form `fi`'s items.
    pub(super) fn items_of(&self, fi: usize) -> &[usize] {
        self.items.get(fi).map_or(&[], Vec::as_slice)
    }
    /// The line of the dimensions.
    pub(super) fn dims_line(&self) -> usize {
        self.dims
    }
    /// The line of the quotas.
    pub(super) fn quotas_line(&self) -> usize {
        self.quotas
    }
}

pub(crate) fn is_ident(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase() || c == b'_')
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        && !matches!(s, "and" | "or" | "not" | "true" | "false")
}

/// Why two definitions of one code cannot pool, if they cannot.
fn incompatibility(a: &KindDef, b: &KindDef) -> Option<String> {
    if a.name() != b.name() {
        return Some(format!("kind `{}` here but `{}` on another form", b.name(), a.name()));
    }
    match (a, b) {
        (
            KindDef::Scale { min: a0, max: a1, direction: ad, .. },
            KindDef::Scale { min: b0, max: b1, direction: bd, .. },
        ) if (a0, a1, ad) != (b0, b1, bd) => {
            Some(format!("scale {b0}..{b1} ({bd:?}) here but {a0}..{a1} ({ad:?}) on another form"))
        }
        (KindDef::MultiSelect { ranked: ar, .. }, KindDef::MultiSelect { ranked: br, .. }) if ar != br => {
            Some("ranked on one form but not on another".into())
        }
        _ => None,
    }
}

/// Lints and compiles `def`; `lines` locates its forms and items.
pub(super) fn compile(def: StudyDef, lines: &IdLines) -> Result<Study, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut p = |line: usize, message: String| problems.push(Problem { line, message });

    if !is_label_safe(&def.study) {
        p(1, format!("study id `{}` must be lowercase letters, digits, `_` or `-`", def.study));
    }
    let mut missing = HashMap::default();
    for m in &def.missing_codes {
        if missing.insert(m.code.clone(), m.kind).is_some() {
            p(0, format!("missing code `{}` is declared twice", m.code));
        }
    }

    lint_fieldwork(&def.fieldwork, &mut p);

    let mut dims = Vec::new();
    for d in &def.dimensions {
        let mut value_index = HashMap::default();
        for (i, v) in d.values.iter().enumerate() {
            if !is_label_safe(&v.code) || v.code == "other" || v.code == "unknown" {
                p(
                    lines.dims,
                    format!(
                        "dimension `{}` value `{}` must be lowercase letters, digits, `_` or `-` and not `other` or `unknown`",
                        d.name, v.code
                    ),
                );
            }
            if value_index.insert(v.code.clone(), i).is_some() {
                p(lines.dims, format!("dimension `{}` lists value `{}` twice", d.name, v.code));
            }
        }
        if !is_ident(&d.name) {
            p(lines.dims, format!("dimension name `{}` must be a lowercase identifier", d.name));
        }
        if dims.iter().any(|x: &Dim| x.name == d.name) {
            p(lines.dims, format!("dimension `{}` is declared twice", d.name));
        }
        dims.push(Dim {
            name: d.name.clone(),
            source: d.source,
            values: d.values.iter().map(|v| v.code.clone()).collect(),
            labels: d.values.iter().map(|v| v.label.clone()).collect(),
            value_index,
        });
    }

    let quotas = quota::compile(&def.quotas, &dims, &mut |m| p(lines.quotas, m));

    let mut codes: Vec<CodeInfo> = Vec::new();
    let mut code_index: HashMap<String, usize> = HashMap::default();
    let mut form_index = HashMap::default();
    let mut forms = Vec::new();

    for (fi, f) in def.forms.iter().enumerate() {
        let fline = lines.forms[fi];
        if form_index.insert(f.id.clone(), fi).is_some() {
            p(fline, format!("form id `{}` is used twice", f.id));
        }
        if !is_label_safe(&f.id) {
            p(fline, format!("form id `{}` must be lowercase letters, digits, `_` or `-`", f.id));
        }
        let mut fixed_segments = Vec::new();
        for (dname, dval) in &f.segments {
            match dims.iter().position(|d| &d.name == dname) {
                None => p(fline, format!("form `{}` sets unknown dimension `{dname}`", f.id)),
                Some(di) if dims[di].source != DimensionSource::Form => p(
                    fline,
                    format!("form `{}` sets dimension `{dname}`, which is not sourced from the form", f.id),
                ),
                Some(di) => match dims[di].value_index.get(dval) {
                    Some(&vi) => fixed_segments.push((di, vi)),
                    None => {
                        p(fline, format!("form `{}`: `{dval}` is not a value of dimension `{dname}`", f.id))
                    }
                },
            }
        }
        for (di, d) in dims.iter().enumerate() {
            if d.source == DimensionSource::Form && !fixed_segments.iter().any(|(x, _)| *x == di) {
                p(fline, format!("form `{}` does not set dimension `{}`", f.id, d.name));
            }
        }

        let mut item_index = HashMap::default();
        let mut seen_codes: HashMap<&str, &str> = HashMap::default();
        let mut items = Vec::new();
        for (ii, it) in f.items.iter().enumerate() {
            let line = lines.items[fi][ii];
            if !is_ident(&it.id) {
                p(line, format!("item id `{}` must be a lowercase identifier such as `q23`", it.id));
            }
            if item_index.insert(it.id.clone(), ii).is_some() {
                p(line, format!("form `{}`: item id `{}` is used twice", f.id, it.id));
            }
            if let Some(other) = seen_codes.insert(&it.code, &it.id) {
                p(
                    line,
                    format!("form `{}`: code `{}` is used by both `{other}` and `{}`", f.id, it.code, it.id),
                );
            }
            if !is_label_safe(&it.code) {
                p(line, format!("item code `{}` must be lowercase letters, digits, `_` or `-`", it.code));
            }
            lint_kind(&it.kind, &it.id, line, &mut p);

            let code = match code_index.get(&it.code) {
                Some(&c) => {
                    if let Some(why) = incompatibility(&codes[c].kind, &it.kind) {
                        p(line, format!("code `{}` (item `{}` of form `{}`): {why}", it.code, it.id, f.id));
                    }
                    // Options another form adds extend the pooled list.
                    for cat in it.kind.categories() {
                        if !codes[c].categories.iter().any(|(v, _)| *v == cat.0) {
                            codes[c].categories.push(cat);
                        }
                    }
                    c
                }
                None => {
                    code_index.insert(it.code.clone(), codes.len());
                    codes.push(CodeInfo {
                        code: it.code.clone(),
                        kind: it.kind.clone(),
                        text: it.text.clone(),
                        categories: it.kind.categories(),
                        value_rank: Vec::new(),
                    });
                    codes.len() - 1
                }
            };
            // The pooled list holds every option of this item by now.
            let categories = it
                .kind
                .categories()
                .into_iter()
                .filter_map(|(v, _)| {
                    let k = codes[code].categories.iter().position(|(p, _)| *p == v)?;
                    Some((v, u32::try_from(k).ok()?))
                })
                .collect();
            // Raw numbers that stand for missing codes: declared codes that are numbers.
            let mut missing_numbers = Vec::new();
            for c in &it.missing_numbers {
                match (missing.get(c), c.trim().parse::<f64>()) {
                    (Some(&kind), Ok(n)) if n.is_finite() => missing_numbers.push((n, kind)),
                    (None, _) => p(
                        line,
                        format!("item `{}`: missing number `{c}` is not a missing code of the study", it.id),
                    ),
                    (Some(_), _) => p(line, format!("item `{}`: missing code `{c}` is not a number", it.id)),
                }
            }
            items.push(Item {
                id: it.id.clone(),
                code,
                text: it.text.clone(),
                kind: it.kind.clone(),
                required: it.required,
                relevant: None,
                deps: Vec::new(),
                constraint: None,
                constraint_message: it.constraint_message.clone().unwrap_or_default(),
                constraint_hard: it.constraint_hard,
                missing_numbers,
                categories,
            });
        }

        // Resolve conditions once every id of the form is known.
        for (ii, it) in f.items.iter().enumerate() {
            let line = lines.items[fi][ii];
            if let Some(src) = &it.constraint {
                match resolve(src, &item_index) {
                    Ok(e) => items[ii].constraint = Some(e),
                    Err(Unresolved::Parse(e)) => p(line, format!("item `{}`: constraint: {e}", it.id)),
                    Err(Unresolved::Unknown(ids)) => ids.iter().for_each(|r| {
                        p(line, format!("item `{}`: constraint refers to unknown item `{r}`", it.id))
                    }),
                }
            }
            if let Some(src) = &it.relevant {
                match resolve(src, &item_index) {
                    Ok(e) => {
                        items[ii].deps = e.item_indexes();
                        items[ii].relevant = Some(e);
                    }
                    Err(Unresolved::Parse(e)) => p(line, format!("item `{}`: {e}", it.id)),
                    Err(Unresolved::Unknown(ids)) => ids.iter().for_each(|r| {
                        p(line, format!("item `{}`: condition refers to unknown item `{r}`", it.id))
                    }),
                }
            }
        }
        for cycle in find_cycles(&items) {
            let ids: Vec<&str> = cycle.iter().map(|&i| items[i].id.as_str()).collect();
            p(
                lines.items[fi][cycle[0]],
                format!("form `{}`: relevance conditions form a cycle: {}", f.id, ids.join(" -> ")),
            );
        }
        forms.push(Form { id: f.id.clone(), title: f.title.clone(), items, fixed_segments, item_index });
    }
    if def.forms.is_empty() {
        p(0, "the study has no forms".into());
    }
    for c in &mut codes {
        let mut by_value: Vec<usize> = (0..c.categories.len()).collect();
        by_value.sort_by(|&a, &b| c.categories[a].0.cmp(&c.categories[b].0));
        c.value_rank = vec![0; by_value.len()];
        for (rank, &k) in by_value.iter().enumerate() {
            c.value_rank[k] = u32::try_from(rank).unwrap_or(u32::MAX);
        }
    }

    if problems.is_empty() {
        Ok(Study { def, forms, codes, dims, quotas, form_index, code_index, missing })
    } else {
        problems.sort_by_key(|p| p.line);
        Err(problems)
    }
}

fn lint_fieldwork(f: &FieldworkDef, p: &mut impl FnMut(usize, String)) {
    let share = |x: f64| (0.0..=1.0).contains(&x);
    if let EligibilityEstimate::Fixed(e) = f.eligibility_estimate
        && !share(e)
    {
        p(0, format!("fieldwork.eligibility_estimate {e} must be between 0 and 1 (or `proportional`)"));
    }
    if let Some(t) = f.response_rate_target
        && !(t > 0.0 && t <= 1.0)
    {
        p(0, format!("fieldwork.response_rate_target {t} must be above 0 and at most 1"));
    }
    if !(0.0..1.0).contains(&f.speeder_ratio) {
        p(0, format!("fieldwork.speeder_ratio {} must be at least 0 and below 1", f.speeder_ratio));
    }
    if !share(f.outlier_min_difference) {
        p(
            0,
            format!("fieldwork.outlier_min_difference {} must be between 0 and 1", f.outlier_min_difference),
        );
    }
    if !(f.outlier_ratio > 1.0 && f.outlier_ratio.is_finite()) {
        p(0, format!("fieldwork.outlier_ratio {} must be above 1", f.outlier_ratio));
    }
}

fn lint_kind(kind: &KindDef, id: &str, line: usize, p: &mut impl FnMut(usize, String)) {
    match kind {
        KindDef::Scale { min, max, labels, box_size, .. } => {
            if min >= max {
                p(line, format!("item `{id}`: scale min {min} must be below max {max}"));
            }
            if labels.is_empty() {
                p(line, format!("item `{id}`: scale has no labels (label at least both ends)"));
            } else if !labels.contains_key(min) || !labels.contains_key(max) {
                p(line, format!("item `{id}`: scale labels must include both ends ({min} and {max})"));
            }
            if let Some(k) = labels.keys().find(|k| *k < min || *k > max) {
                p(line, format!("item `{id}`: label for {k} is outside the scale"));
            }
            if let Some(b) = box_size {
                let points = (max - min + 1).max(0) as u32;
                if *b == 0 || 2 * b > points {
                    p(line, format!("item `{id}`: box_size {b} does not fit a {points}-point scale"));
                }
            }
        }
        KindDef::SingleChoice { options } | KindDef::MultiSelect { options, .. } => {
            if options.is_empty() {
                p(line, format!("item `{id}`: no options"));
            }
            let mut seen = std::collections::HashSet::new();
            for o in options {
                if !is_label_safe(&o.code) {
                    p(
                        line,
                        format!(
                            "item `{id}`: option code `{}` must be lowercase letters, digits, `_` or `-`",
                            o.code
                        ),
                    );
                }
                if !seen.insert(&o.code) {
                    p(line, format!("item `{id}`: option `{}` is listed twice", o.code));
                }
            }
            if let KindDef::MultiSelect { max_picks: Some(0), .. } = kind {
                p(line, format!("item `{id}`: max_picks must be at least 1"));
            }
        }
        KindDef::Count { min, max } if min > max => {
            p(line, format!("item `{id}`: count min {min} is above max {max}"))
        }
        KindDef::Number { min: Some(a), max: Some(b) } if a > b => {
            p(line, format!("item `{id}`: number min {a} is above max {b}"))
        }
        _ => {}
    }
}

/// Why a condition could not be resolved against its form.
enum Unresolved {
    /// It does not parse.
    Parse(super::expr::ParseError),
    /// It names items the form lacks (in order of appearance).
    Unknown(Vec<String>),
}

/// Parses a condition (relevance or constraint) and points each item it
/// names at that item's index in the form.
fn resolve(src: &str, item_index: &HashMap<String, usize>) -> Result<Expr, Unresolved> {
    let mut e = Expr::parse(src).map_err(Unresolved::Parse)?;
    let mut unknown = Vec::new();
    for r in e.refs_mut() {
        match item_index.get(&r.id) {
            Some(&i) => r.index = i,
            None => unknown.push(r.id.clone()),
        }
    }
    if unknown.is_empty() { Ok(e) } else { Err(Unresolved::Unknown(unknown)) }
}

/// Cycles in the relevance graph (item -> items its condition reads), each
/// reported once, starting at its first item.
fn find_cycles(items: &[Item]) -> Vec<Vec<usize>> {
    let edges: Vec<Vec<usize>> =
        items.iter().map(|i| i.relevant.as_ref().map(|e| e.item_indexes()).unwrap_or_default()).collect();
    // 0 = unvisited, 1 = on stack, 2 = done
    let mut state = vec![0u8; items.len()];
    let mut cycles = Vec::new();
    fn dfs(
        n: usize,
        edges: &[Vec<usize>],
        state: &mut [u8],
        stack: &mut Vec<usize>,
        out: &mut Vec<Vec<usize>>,
    ) {
        state[n] = 1;
        stack.push(n);
        for &m in &edges[n] {
            if state[m] == 1 {
                let start = stack.iter().position(|&x| x == m).unwrap_or(0);
                let mut c = stack[start..].to_vec();
                c.push(m);
                out.push(c);
            } else if state[m] == 0 {
                dfs(m, edges, state, stack, out);
            }
        }
        stack.pop();
        state[n] = 2;
    }
    for n in 0..items.len() {
        if state[n] == 0 {
            dfs(n, &edges, &mut state, &mut Vec::new(), &mut cycles);
        }
    }
    cycles
}
