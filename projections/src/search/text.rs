//! Text analysis shared by every search engine and by queries.
//!
//! Both engines index the same *terms*: words cut by charabia (jieba for Chinese, the Latin
//! segmenter for English), normalised (lower case, no diacritics) and, for Latin words,
//! stemmed with the English Snowball stemmer. Queries are cut the same way, so `running` and
//! `run` meet on the term `run`, and `自习室` is found inside `我在图书馆的自习室复习` because
//! jieba cuts both into the same words. Meilisearch does not stem; feeding it these terms
//! makes it behave like the embedded engine instead of weakening what we test.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use charabia::normalizer::{ClassifierOption, NormalizerOption};
use charabia::{Normalize, Script, Segment, Token, TokenKind};
use rust_stemmers::{Algorithm, Stemmer};

static ENGLISH: LazyLock<Stemmer> = LazyLock::new(|| Stemmer::create(Algorithm::English));

/// charabia's own options for `str::tokenize`: lossy normalisation, the default separators,
/// no stop words.
static NORMALIZING: NormalizerOption<'static> = NormalizerOption {
    create_char_map: false,
    classifier: ClassifierOption {
        stop_words: None,
        separators: None,
    },
    lossy: true,
};

/// charabia's default separators that are printable ASCII: a token that is one of them is a
/// separator, whatever else charabia's normalisers would look at.
static ASCII_SEPARATORS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    charabia::separators::DEFAULT_SEPARATORS
        .iter()
        .copied()
        .filter(|s| s.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
        .collect()
});

/// Stems of the Latin words analysed lately on this thread, at most this many: words repeat
/// (a forum's vocabulary is small next to its texts), and a stem costs more than a look-up.
const STEMS_KEPT: usize = 4096;

thread_local! {
    static STEMS: RefCell<HashMap<Box<str>, Box<str>>> = RefCell::new(HashMap::new());
}

/// The English stem of a normalised Latin word.
fn stem(word: &str) -> String {
    STEMS.with(|stems| {
        let mut stems = stems.borrow_mut();
        if let Some(stem) = stems.get(word) {
            return stem.to_string();
        }
        let stem = ENGLISH.stem(word).into_owned();
        if stems.len() >= STEMS_KEPT {
            stems.clear();
        }
        stems.insert(word.into(), stem.as_str().into());
        stem
    })
}

/// Query terms this long (in characters) or longer also match terms one edit away (a
/// transposition counts as one edit), so `libary` finds `library`.
pub const TYPO_MIN_CHARS: usize = 5;

/// One analysed word of a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// What is indexed and matched: normalised and, for Latin words, stemmed.
    pub text: String,
    /// Byte range of the word in the original text (for highlighting).
    pub start: usize,
    pub end: usize,
    /// Latin script: stemmed and typo-tolerant. Other scripts match whole words only.
    pub latin: bool,
}

impl Term {
    /// Whether a query term tolerates one typo.
    pub fn typo_tolerant(&self) -> bool {
        self.latin && self.text.chars().count() >= TYPO_MIN_CHARS
    }

    /// Whether this query term matches the indexed term `other`.
    pub fn matches(&self, other: &str) -> bool {
        self.text == other || (self.typo_tolerant() && within_one_edit(&self.text, other))
    }
}

/// Builds what the analysis builds on first use (charabia's dictionaries and automata, the
/// stemmer), so that no request waits for it.
pub fn warm() {
    analyze("树洞里的自习室 warming up the analysis");
}

/// The words of `text`, in order.
///
/// The words charabia's `str::tokenize` gives, cut by its segmenters (script and language
/// detection, jieba). Most tokens of a text are plain ASCII words and separators, on which
/// charabia's dozen normalisers would only lower-case or classify: those are done here
/// directly, and every other token goes through charabia's normalisers. A test holds the
/// result to charabia's on mixed texts.
pub fn analyze(text: &str) -> Vec<Term> {
    let mut terms = Vec::new();
    for token in text.segment() {
        let (start, end, script) = (token.byte_start, token.byte_end, token.script);
        let word = match plain(&token) {
            Plain::Word => token.lemma().to_ascii_lowercase(),
            Plain::Separator => continue,
            Plain::No => {
                let token = token.normalize(&NORMALIZING);
                if !token.is_word() || token.lemma().trim().is_empty() {
                    continue;
                }
                token.lemma().to_owned()
            }
        };
        let latin = script == Script::Latin;
        terms.push(Term {
            text: if latin { stem(&word) } else { word },
            start,
            end,
            latin,
        });
    }
    terms
}

/// What charabia's normalisers would make of a token that is plain ASCII.
enum Plain {
    /// Letters and digits in the Latin script: a word, lower-cased (the only normaliser that
    /// changes it).
    Word,
    /// Spaces, or one of the default separators: not a word.
    Separator,
    /// Anything else: ask charabia.
    No,
}

fn plain(token: &Token) -> Plain {
    if token.kind != TokenKind::Unknown {
        return Plain::No;
    }
    let lemma = token.lemma();
    if lemma.is_empty() {
        return Plain::No;
    }
    if token.script == Script::Latin && lemma.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Plain::Word;
    }
    if lemma.bytes().all(|b| b == b' ') || ASCII_SEPARATORS.contains(lemma) {
        return Plain::Separator;
    }
    Plain::No
}

/// The terms of `text` joined by spaces: the field both engines index (with a whitespace
/// tokenizer on the embedded engine, and charabia again on Meilisearch, which leaves these
/// words as they are).
pub fn terms_field<'a>(texts: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for text in texts {
        extend_terms(&mut out, text);
    }
    out
}

/// Appends the terms of `text` to a terms field, as [`terms_field`] would have.
pub fn extend_terms(field: &mut String, text: &str) {
    for term in analyze(text) {
        if !field.is_empty() {
            field.push(' ');
        }
        field.push_str(&term.text);
    }
}

/// Optimal string alignment distance of at most one: one insertion, deletion, substitution or
/// transposition of neighbours.
pub fn within_one_edit(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let (short, long) = if a.len() <= b.len() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    match long.len() - short.len() {
        0 => {
            let diff: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
            match diff.as_slice() {
                [] | [_] => true,
                [i, j] => *j == i + 1 && a[*i] == b[*j] && a[*j] == b[*i],
                _ => false,
            }
        }
        1 => {
            let skip = (0..short.len())
                .find(|&i| short[i] != long[i])
                .unwrap_or(short.len());
            short[skip..] == long[skip + 1..]
        }
        _ => false,
    }
}

/// Escapes text for HTML, so that snippets can carry `<mark>` and nothing else.
fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// The words of `text` that match `query`.
fn matches<'t>(words: &'t [Term], query: &[Term]) -> Vec<&'t Term> {
    words
        .iter()
        .filter(|w| query.iter().any(|q| q.matches(&w.text)))
        .collect()
}

/// A window of about `width` characters of `text` around its first word matching `query`,
/// HTML-escaped, with every matching word in `<mark>`; `None` if nothing matches. Cut ends
/// are marked with `…`.
pub fn snippet(text: &str, query: &[Term], width: usize) -> Option<String> {
    let words = analyze(text);
    let hits = matches(&words, query);
    let first = hits.first()?;
    // Start a few characters before the first match, on a character boundary.
    let lead = text[..first.start]
        .char_indices()
        .rev()
        .nth(width / 4)
        .map_or(0, |(i, _)| i);
    Some(marked(text, &hits, lead, width))
}

/// All of `text`, HTML-escaped, with every word matching `query` in `<mark>`.
pub fn highlight(text: &str, query: &[Term]) -> String {
    let words = analyze(text);
    marked(text, &matches(&words, query), 0, usize::MAX)
}

/// The first `width` characters of `text`, HTML-escaped, with `…` if cut.
pub fn excerpt(text: &str, width: usize) -> String {
    marked(text, &[], 0, width)
}

/// About `width` characters of `text` from byte `lead`, escaped, with `hits` in `<mark>` and
/// `…` at cut ends.
fn marked(text: &str, hits: &[&Term], lead: usize, width: usize) -> String {
    let end = text[lead..]
        .char_indices()
        .nth(width)
        .map_or(text.len(), |(i, _)| lead + i);
    let mut out = String::new();
    if lead > 0 {
        out.push('…');
    }
    // Neighbouring matches (自习 + 室 of 自习室) share one mark.
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for hit in hits.iter().filter(|h| h.start >= lead && h.end <= end) {
        match spans.last_mut() {
            Some(last) if last.1 == hit.start => last.1 = hit.end,
            _ => spans.push((hit.start, hit.end)),
        }
    }
    let mut at = lead;
    for (start, stop) in spans {
        escape(&text[at..start], &mut out);
        out.push_str("<mark>");
        escape(&text[start..stop], &mut out);
        out.push_str("</mark>");
        at = stop;
    }
    escape(&text[at..end], &mut out);
    if end < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn terms(text: &str) -> Vec<String> {
        analyze(text).into_iter().map(|t| t.text).collect()
    }

    /// What `analyze` gave when it asked charabia for every token (`str::tokenize`).
    fn charabia_alone(text: &str) -> Vec<Term> {
        use charabia::Tokenize;
        text.tokenize()
            .filter(|t| t.is_word())
            .filter_map(|t| {
                let lemma = t.lemma();
                if lemma.trim().is_empty() {
                    return None;
                }
                let latin = t.script == Script::Latin;
                let text = if latin {
                    ENGLISH.stem(lemma).into_owned()
                } else {
                    lemma.to_owned()
                };
                Some(Term {
                    text,
                    start: t.byte_start,
                    end: t.byte_end,
                    latin,
                })
            })
            .collect()
    }

    /// Pieces of text as a forum gets them, and the odd ones charabia treats apart.
    const PIECES: &[&str] = &[
        "Totally",
        "agree",
        "LIBRARY",
        "Running",
        "wi-fi",
        "Wi-Fi",
        "e-mail",
        "don't",
        "it’s",
        "3pm",
        "2026",
        "12.5",
        "1,000",
        "CS101",
        "camelCase",
        "snake_case",
        "a.b",
        "U.S.A.",
        "http://x.cn/a?b=1",
        "@user",
        "#tag",
        "$5",
        "100%",
        "C++",
        "naïve",
        "café",
        "Æsir",
        "œuvre",
        "straße",
        "İstanbul",
        "Ωmega",
        "привет",
        "Ελλάδα",
        "مرحبا",
        "שלום",
        "สวัสดี",
        "楼主说得对",
        "我也这么觉得",
        "图书馆",
        "自习室",
        "麻辣烫",
        "樓主",
        "ｆｕｌｌ",
        "１２３",
        "こんにちは",
        "カタカナ",
        "한국어",
        "😀",
        "🐱猫咪",
        " ",
        "  ",
        "\t",
        "\n",
        "\u{0}",
        "\u{7}",
        ",",
        ". ",
        ", ",
        "!",
        "?",
        "…",
        "。",
        "，",
        "、",
        "「",
        "」",
        "(",
        ")",
        "-",
        "—",
        "'",
        "\"",
        "/",
        ":",
        ";",
        "_",
        "*",
        "~",
        "^",
        "|",
        "<b>",
        "&amp;",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn the_same_terms_as_charabia_alone(
            pieces in prop::collection::vec(
                (prop::sample::select(PIECES), prop::sample::select(&["", " ", "", "\n", ","][..])),
                0..12,
            )
        ) {
            let text: String = pieces.iter().flat_map(|(p, sep)| [*p, *sep]).collect();
            prop_assert_eq!(analyze(&text), charabia_alone(&text), "{:?}", text);
        }
    }

    #[test]
    fn the_same_terms_as_charabia_alone_on_whole_posts() {
        for text in [
            "楼主说得对，我也这么觉得。Totally agree, see you at the library tonight!",
            "今天图书馆人好多。The library is packed today.",
            "Anyone lost a BLUE umbrella near the 3rd-floor café? 我在自习室捡到一把伞",
            "RUNNING club @ 6:30am — bring $2 for Wi-Fi; it's 100% free otherwise (really!)",
            "Ça va? Naïve façade, Übermensch, smörgåsbord, İstanbul, ΑΘΗΝΑ, МОСКВА.",
            "",
            "   ",
        ] {
            assert_eq!(analyze(text), charabia_alone(text), "{text:?}");
        }
    }

    #[test]
    fn no_default_separator_is_a_plain_word() {
        for s in charabia::separators::DEFAULT_SEPARATORS {
            assert!(!s.bytes().all(|b| b.is_ascii_alphanumeric()), "{s:?}");
        }
        assert!(ASCII_SEPARATORS.contains(","));
        assert!(!ASCII_SEPARATORS.contains("a"));
    }

    #[test]
    fn kept_stems_are_the_stemmers() {
        for word in ["running", "libraries", "running", "library", "tonight"] {
            assert_eq!(stem(word), ENGLISH.stem(word));
        }
    }

    #[test]
    fn chinese_words_cut_the_same_alone_and_inside_sentences() {
        // charabia cuts for search: long words become dictionary bigrams (自习室 -> 自习 室)
        // and variants are unified, the same way for documents and queries.
        let sentence = terms("我今天在图书馆的自习室复习高数，门口的麻辣烫很好吃");
        for word in ["自习室", "图书馆", "麻辣", "复习"] {
            let word = terms(word);
            assert!(
                sentence.windows(word.len()).any(|w| w == word.as_slice()),
                "{word:?} in {sentence:?}"
            );
        }
        assert!(!terms("自习室").is_empty());
    }

    #[test]
    fn english_is_lower_cased_and_stemmed() {
        assert_eq!(terms("Morning RUN"), vec!["morn", "run"]);
        assert_eq!(terms("running"), vec!["run"]);
        assert_eq!(terms("libraries"), terms("library"));
    }

    #[test]
    fn one_edit_and_no_more() {
        assert!(within_one_edit("librari", "libari"));
        assert!(within_one_edit("professor", "porfessor"));
        assert!(within_one_edit("exam", "exams"));
        assert!(within_one_edit("same", "same"));
        assert!(!within_one_edit("library", "lbirayr"));
        assert!(!within_one_edit("abc", "abcde"));
        assert!(!within_one_edit("abcd", "badc"));
    }

    #[test]
    fn short_words_and_chinese_need_exact_terms() {
        let q = analyze("cat");
        assert!(!q[0].matches("car"));
        let q = analyze("麻辣");
        assert!(!q[0].typo_tolerant());
    }

    #[test]
    fn snippets_mark_matches_and_escape_the_rest() {
        let q = analyze("running");
        let s = snippet("A <b>morning</b> run & a long Run.", &q, 80).unwrap();
        assert_eq!(
            s,
            "A &lt;b&gt;morning&lt;/b&gt; <mark>run</mark> &amp; a long <mark>Run</mark>."
        );
        assert!(snippet("nothing here", &q, 80).is_none());
        let zh = analyze("自习室");
        assert_eq!(
            snippet("三楼自习室今晚有空位吗？", &zh, 80).unwrap(),
            "三楼<mark>自习室</mark>今晚有空位吗？"
        );
        let long = format!("{}running{}", "x ".repeat(200), " y".repeat(200));
        let s = snippet(&long, &q, 40).unwrap();
        assert!(s.starts_with('…') && s.ends_with('…') && s.contains("<mark>running</mark>"));
    }
}
