//! Indexing rate and query latency of the embedded search engine, against raw tantivy on the
//! same texts in the same run.
//!
//! ```text
//! cargo bench -p infra --bench search                       # 100 000 documents, 1 000 queries
//! cargo bench -p infra --bench search -- --docs 20000 --queries 500 --json
//! MEILI_URL=http://127.0.0.1:7700 MEILI_MASTER_KEY=... cargo bench -p infra --bench search
//! ```
//!
//! 1. Generates `--docs` posts (campus words in Chinese and English, 10 to 40 words each, one
//!    in four with comments) as the search projection's changes.
//! 2. Times `Embedded::apply` over them in batches of 500 changes, as the projector runs it:
//!    charabia analysis and stemming, read-modify-write of each touched document, one durable
//!    commit with the checkpoint per batch.
//! 3. Baseline: raw tantivy indexing the same titles, bodies and comments with its default
//!    tokenizer (no segmentation of Chinese, no stemming) into one stored text field,
//!    committing every 500 documents.
//! 4. Times `--queries` queries of one or two words (a tenth with a one-letter typo) through
//!    `SearchIndex::search` (limit 20, with the total count and the stored documents), and
//!    the same words through tantivy's `QueryParser` on the baseline index (top 20, count and
//!    stored documents), and reports p50/p99. The baseline has no typo tolerance (fuzzy
//!    matching over three fields is most of the difference) and no cursor.
//! 5. With `MEILI_URL` (and `MEILI_MASTER_KEY`) set, steps 2 and 4 again through the
//!    Meilisearch adapter, in an index of its own deleted afterwards: a `meilisearch` column
//!    beside the embedded engine's, on the same corpus in the same run (each batch waits for
//!    Meilisearch's task, as the projector does).

#![allow(
    // Test code: unwrapping is how a test fails, and its casts are of its own small numbers.
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)]

use projections::{CommentChange, FeedChange};
use std::error::Error;
use std::time::{Duration, Instant};

use chrono::Utc;
use domain::{CommentId, PostId};
use infra::search::{Embedded, MeiliSearch};
use projections::Change;
use projections::search::{Query, SearchIndex, SearchRequest};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::QueryParser;
use tantivy::schema::{STORED, Schema, TEXT};
use tantivy::{Index, TantivyDocument};
use uuid::Uuid;

type BenchResult<T> = Result<T, Box<dyn Error>>;

const BATCH: usize = 500;

const EN: &[&str] = &[
    "library",
    "exam",
    "lecture",
    "professor",
    "dormitory",
    "canteen",
    "basketball",
    "football",
    "swimming",
    "running",
    "homework",
    "assignment",
    "deadline",
    "scholarship",
    "internship",
    "laboratory",
    "chemistry",
    "physics",
    "mathematics",
    "history",
    "philosophy",
    "economics",
    "concert",
    "festival",
    "volunteer",
    "museum",
    "gallery",
    "photography",
    "bicycle",
    "umbrella",
    "coffee",
    "breakfast",
    "noodles",
    "dumplings",
    "weekend",
    "morning",
    "evening",
    "semester",
    "graduation",
    "thesis",
    "seminar",
    "workshop",
    "club",
    "meeting",
    "friends",
    "roommate",
    "printer",
    "network",
    "wireless",
    "keyboard",
    "laptop",
    "notebook",
    "textbook",
    "campus",
    "garden",
    "lake",
    "stadium",
    "gym",
    "teacher",
    "student",
    "classroom",
    "building",
    "bus",
];
const ZH: &[&str] = &[
    "图书馆",
    "自习室",
    "考试",
    "老师",
    "宿舍",
    "食堂",
    "篮球",
    "足球",
    "游泳",
    "跑步",
    "作业",
    "论文",
    "奖学金",
    "实习",
    "实验室",
    "化学",
    "物理",
    "数学",
    "历史",
    "哲学",
    "经济",
    "音乐会",
    "志愿者",
    "博物馆",
    "摄影",
    "自行车",
    "雨伞",
    "咖啡",
    "早餐",
    "面条",
    "饺子",
    "周末",
    "早上",
    "晚上",
    "学期",
    "毕业",
    "讲座",
    "社团",
    "朋友",
    "室友",
    "打印机",
    "网络",
    "电脑",
    "课本",
    "校园",
    "花园",
    "湖边",
    "体育馆",
    "教室",
    "公交",
    "麻辣烫",
    "红烧肉",
    "空调",
    "校园卡",
];

/// A small deterministic generator (xorshift), so every run indexes the same corpus.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn word(&mut self) -> &'static str {
        if self.below(2) == 0 {
            EN[self.below(EN.len())]
        } else {
            ZH[self.below(ZH.len())]
        }
    }

    fn text(&mut self, words: usize) -> String {
        let mut out = String::new();
        for i in 0..words {
            let w = self.word();
            if i > 0 && w.is_ascii() {
                out.push(' ');
            }
            out.push_str(w);
        }
        out
    }
}

struct Corpus {
    changes: Vec<Change>,
    /// Every post's and comment's text, per post, for the baseline.
    texts: Vec<String>,
}

fn corpus(docs: usize) -> Corpus {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut changes = Vec::with_capacity(docs * 2);
    let mut texts = Vec::with_capacity(docs);
    for n in 0..docs {
        let post_id = PostId::new(Uuid::from_u128(n as u128 + 1));
        let words = 3 + rng.below(4);
        let title = rng.text(words);
        let words = 10 + rng.below(31);
        let body = rng.text(words);
        let mut all = format!("{title} {body}");
        changes.push(Change::Feed(FeedChange::InsertPost {
            post_id,
            position: changes.len() as u64 + 1,
            author_id: None,
            author_name: "洞主".into(),
            anonymous: n % 3 == 0,
            title: Some(title),
            body,
            tags: vec![],
            created_at: Utc::now(),
        }));
        if n % 4 == 0 {
            for _ in 0..3 {
                let words = 5 + rng.below(10);
                let body = rng.text(words);
                all.push(' ');
                all.push_str(&body);
                changes.push(Change::Comments(CommentChange::InsertComment {
                    comment_id: CommentId::new(Uuid::now_v7()),
                    post_id,
                    position: changes.len() as u64 + 1,
                    author_id: None,
                    author_name: "Alice".into(),
                    anonymous: true,
                    is_host: false,
                    body,
                    reply_to: None,
                    created_at: Utc::now(),
                }));
            }
        }
        texts.push(all);
    }
    Corpus { changes, texts }
}

/// One or two words; a tenth of them with a letter swapped (a typo the engine tolerates).
fn queries(n: usize) -> Vec<String> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    (0..n)
        .map(|i| {
            let mut q = rng.word().to_owned();
            if i % 3 == 0 {
                q.push(' ');
                q.push_str(rng.word());
            }
            if i % 10 == 0 && q.is_ascii() && q.len() > 6 {
                let mut b = q.into_bytes();
                b.swap(2, 3);
                q = String::from_utf8(b).unwrap_or_default();
            }
            q
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let (docs, n_queries, json_out) = options()?;
    let corpus = corpus(docs);
    let queries = queries(n_queries);
    let dir = tempfile::tempdir()?;

    // treehole's engine, as the projector feeds it.
    let engine = Embedded::open(&dir.path().join("search"))?;
    let (engine_secs, engine_lat, hits) = run_engine(&engine, &corpus, &queries, docs).await?;

    // The same changes and queries through the Meilisearch adapter, when a server is given.
    let meili = match std::env::var("MEILI_URL").ok().filter(|u| !u.is_empty()) {
        Some(url) => {
            let key = std::env::var("MEILI_MASTER_KEY")
                .ok()
                .filter(|k| !k.is_empty());
            let uid = format!("treehole_bench_{}", Uuid::new_v4().simple());
            let meili = MeiliSearch::connect(&url, key.as_deref(), &uid).await?;
            let run = run_engine(&meili, &corpus, &queries, docs).await;
            meili.delete_indexes().await?;
            let (secs, lat, _) = run?;
            Some([
                docs as f64 / secs,
                percentile(&lat, 0.50),
                percentile(&lat, 0.99),
            ])
        }
        None => None,
    };

    // Raw tantivy on the same texts.
    let mut builder = Schema::builder();
    let text = builder.add_text_field("text", TEXT | STORED);
    let base_dir = dir.path().join("baseline");
    std::fs::create_dir_all(&base_dir)?;
    let index = Index::create_in_dir(&base_dir, builder.build())?;
    let mut writer = index.writer(64 * 1024 * 1024)?;
    let started = Instant::now();
    for chunk in corpus.texts.chunks(BATCH) {
        for t in chunk {
            let mut d = TantivyDocument::default();
            d.add_text(text, t);
            writer.add_document(d)?;
        }
        writer.commit()?;
    }
    let base_secs = started.elapsed().as_secs_f64();
    let reader = index.reader()?;

    let parser = QueryParser::for_index(&index, vec![text]);
    let searcher = reader.searcher();
    let mut base_lat = Vec::with_capacity(queries.len());
    for q in &queries {
        let t = Instant::now();
        let query = parser.parse_query_lenient(q).0;
        let (_count, top) =
            searcher.search(&query, &(Count, TopDocs::with_limit(20).order_by_score()))?;
        for (_, addr) in top {
            let _doc: TantivyDocument = searcher.doc(addr)?;
        }
        base_lat.push(t.elapsed());
    }
    base_lat.sort();

    let engine_rate = docs as f64 / engine_secs;
    let base_rate = docs as f64 / base_secs;
    let rows = [
        (
            "index docs/s",
            engine_rate,
            base_rate,
            engine_rate / base_rate,
            meili.map(|m| m[0]),
        ),
        (
            "query p50 ms",
            percentile(&engine_lat, 0.50),
            percentile(&base_lat, 0.50),
            percentile(&base_lat, 0.50) / percentile(&engine_lat, 0.50),
            meili.map(|m| m[1]),
        ),
        (
            "query p99 ms",
            percentile(&engine_lat, 0.99),
            percentile(&base_lat, 0.99),
            percentile(&base_lat, 0.99) / percentile(&engine_lat, 0.99),
            meili.map(|m| m[2]),
        ),
    ];
    if json_out {
        let figures: Vec<_> = rows
            .iter()
            .map(|(name, ours, base, ratio, meili)| {
                serde_json::json!({"figure": name, "treehole": ours, "raw_tantivy": base, "ratio": ratio, "meilisearch": meili})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"docs": docs, "changes": corpus.changes.len(), "queries": queries.len(), "queries_with_hits": hits, "figures": figures})
        );
    } else {
        println!(
            "{docs} documents ({} changes), {} queries ({hits} with hits)",
            corpus.changes.len(),
            queries.len()
        );
        println!(
            "{:<14} {:>12} {:>12} {:>7} {:>12}",
            "figure", "treehole", "raw tantivy", "ratio", "meilisearch"
        );
        for (name, ours, base, ratio, meili) in rows {
            let meili = meili.map_or_else(|| "-".to_owned(), |m| format!("{m:.2}"));
            println!("{name:<14} {ours:>12.2} {base:>12.2} {ratio:>7.3} {meili:>12}");
        }
        println!(
            "(ratio: treehole / baseline for rates, baseline / treehole for latencies; 1 = as fast)"
        );
        if meili.is_none() {
            println!("(meilisearch: skipped, MEILI_URL not set)");
        }
    }
    Ok(())
}

/// Feeds the corpus to `engine` in batches of [`BATCH`] changes as the projector does (each
/// batch applied, with its checkpoint, before the next), then runs every query once: the
/// indexing time in seconds, the sorted query latencies and how many queries found something.
async fn run_engine(
    engine: &dyn SearchIndex,
    corpus: &Corpus,
    queries: &[String],
    docs: usize,
) -> BenchResult<(f64, Vec<Duration>, usize)> {
    let g = engine.create_generation("search", 1).await?;
    engine.promote("search", g.number).await?;
    let started = Instant::now();
    let mut at = 0;
    for batch in corpus.changes.chunks(BATCH) {
        let to = at + batch.len() as u64;
        engine.apply("search", g.number, batch, at, to).await?;
        at = to;
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(engine.documents().await?.len(), docs);
    let mut latencies = Vec::with_capacity(queries.len());
    let mut hits = 0usize;
    for q in queries {
        let request = SearchRequest {
            query: Query::parse(q)?,
            tag: None,
            limit: 20,
            after: None,
        };
        let t = Instant::now();
        let page = engine.search(&request).await?;
        latencies.push(t.elapsed());
        hits += usize::from(!page.hits.is_empty());
    }
    latencies.sort();
    Ok((secs, latencies, hits))
}

fn options() -> BenchResult<(usize, usize, bool)> {
    let mut docs = 100_000;
    let mut queries = 1_000;
    let mut json_out = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--docs" => docs = args.next().ok_or("--docs needs a number")?.parse()?,
            "--queries" => queries = args.next().ok_or("--queries needs a number")?.parse()?,
            "--json" => json_out = true,
            _ => {}
        }
    }
    Ok((docs, queries, json_out))
}
