//! A campus corpus in Chinese and English with queries and the posts they must find.
//!
//! Shared by the engine suite (`infra/tests/search.rs`) and the HTTP suite
//! (`api/tests/api/search.rs`). Target posts each carry words no other post has; fillers talk
//! about other campus things and all say `week` (English) or `今天` (Chinese), which makes them
//! the broad queries for paging.

/// A post of the corpus. `key` names it in expectations.
pub struct CorpusPost {
    pub key: String,
    pub title: Option<String>,
    pub body: String,
    pub tags: Vec<String>,
    pub anonymous: bool,
    /// Comment texts, in order.
    pub comments: Vec<String>,
}

/// A query and the post that must rank first for it.
pub struct Expectation {
    pub query: &'static str,
    pub tag: Option<&'static str>,
    pub first: &'static str,
    /// Exactly how many posts match (the target's words appear nowhere else).
    pub hits: usize,
}

const TARGETS: &[(&str, &str, &str, &[&str])] = &[
    (
        "study-room",
        "图书馆自习室占座",
        "每天早上七点图书馆的自习室就坐满了，占座现象太严重了。",
        &["study"],
    ),
    (
        "malatang",
        "学校门口新开的麻辣烫",
        "学校门口新开的麻辣烫味道不错，就是排队太久。",
        &["food"],
    ),
    (
        "morning-run",
        "Morning run",
        "Anyone up for a morning run around the lake at 6am?",
        &["sport"],
    ),
    (
        "library-hours",
        "Library opening hours",
        "The library will extend its opening hours during the exam period.",
        &["study"],
    ),
    (
        "professor",
        "Professor Zhang's office hours",
        "Professor Zhang moved her office hours to Thursday afternoon.",
        &["study"],
    ),
    (
        "scholarship",
        "Scholarship application deadline",
        "The national scholarship application closes on Friday.",
        &["study"],
    ),
    (
        "basketball",
        "篮球赛 basketball tournament",
        "Our department basketball team won the semifinal! 篮球队加油",
        &["sport"],
    ),
    (
        "dorm-aircon",
        "宿舍空调坏了",
        "宿舍空调又坏了，宿管说要等一周才能修。",
        &["dorm"],
    ),
    (
        "canteen",
        "二食堂的红烧肉",
        "二食堂中午的红烧肉特别好吃，推荐。",
        &["food"],
    ),
    (
        "chemistry",
        "Chemistry lab report",
        "How long should the chemistry laboratory report be?",
        &["study"],
    ),
    (
        "swimming",
        "Swimming pool reopened",
        "The swimming pool reopened after renovation; swimmers welcome.",
        &["sport"],
    ),
    (
        "graduation",
        "毕业照",
        "毕业照拍摄时间定在六月十五日，记得穿学士服。",
        &["event"],
    ),
    (
        "bike",
        "自行车被偷了",
        "我的自行车在教学楼下被偷了，有人看到吗？",
        &[],
    ),
    (
        "coding-club",
        "Programming club meetup",
        "The programming club meets on Wednesdays to practise algorithms.",
        &["club"],
    ),
    (
        "internship",
        "实习 internship offers",
        "Got two internship offers, which company should I choose?",
        &["career"],
    ),
    (
        "exam-stress",
        "期末考试压力好大",
        "期末考试周压力好大，失眠了好几天。",
        &["study"],
    ),
    (
        "cat",
        "校园里的流浪猫",
        "南门那只橘猫又胖了，大家别乱喂。",
        &[],
    ),
    (
        "wifi",
        "Campus wifi is down",
        "The wireless network keeps disconnecting in the dormitories.",
        &["dorm"],
    ),
    (
        "volunteer",
        "Volunteering at the museum",
        "Looking for volunteers to guide visitors at the university museum.",
        &["event"],
    ),
    (
        "concert",
        "新年音乐会",
        "新年音乐会的门票明天中午开抢。",
        &["event"],
    ),
    (
        "photography",
        "Photography exhibition",
        "The students' photography exhibition opens in the art gallery.",
        &["event"],
    ),
    (
        "lost-card",
        "丢了校园卡",
        "在二食堂丢了校园卡，捡到请联系。",
        &[],
    ),
    (
        "kayak",
        "Plans for Saturday?",
        "Any ideas for Saturday afternoon?",
        &[],
    ),
];

/// Comments on targets, by key: `kayak` is only found through its comment.
const TARGET_COMMENTS: &[(&str, &str)] = &[
    ("kayak", "Let's go kayaking on the river!"),
    ("malatang", "同意，麻辣烫加一份宽粉"),
    ("morning-run", "Count me in"),
];

pub const EXPECTATIONS: &[Expectation] = &[
    // Chinese words inside longer sentences.
    Expectation {
        query: "自习室",
        tag: None,
        first: "study-room",
        hits: 1,
    },
    Expectation {
        query: "麻辣",
        tag: None,
        first: "malatang",
        hits: 1,
    },
    Expectation {
        query: "空调",
        tag: None,
        first: "dorm-aircon",
        hits: 1,
    },
    Expectation {
        query: "红烧肉",
        tag: None,
        first: "canteen",
        hits: 1,
    },
    Expectation {
        query: "毕业照",
        tag: None,
        first: "graduation",
        hits: 1,
    },
    Expectation {
        query: "自行车",
        tag: None,
        first: "bike",
        hits: 1,
    },
    Expectation {
        query: "期末考试",
        tag: None,
        first: "exam-stress",
        hits: 1,
    },
    Expectation {
        query: "音乐会",
        tag: None,
        first: "concert",
        hits: 1,
    },
    Expectation {
        query: "校园卡",
        tag: None,
        first: "lost-card",
        hits: 1,
    },
    Expectation {
        query: "篮球",
        tag: None,
        first: "basketball",
        hits: 1,
    },
    Expectation {
        query: "橘猫",
        tag: None,
        first: "cat",
        hits: 1,
    },
    // English across inflections.
    Expectation {
        query: "running",
        tag: None,
        first: "morning-run",
        hits: 1,
    },
    Expectation {
        query: "scholarships",
        tag: None,
        first: "scholarship",
        hits: 1,
    },
    Expectation {
        query: "algorithm",
        tag: None,
        first: "coding-club",
        hits: 1,
    },
    Expectation {
        query: "dormitory",
        tag: None,
        first: "wifi",
        hits: 1,
    },
    Expectation {
        query: "volunteer",
        tag: None,
        first: "volunteer",
        hits: 1,
    },
    Expectation {
        query: "exhibitions",
        tag: None,
        first: "photography",
        hits: 1,
    },
    Expectation {
        query: "swim",
        tag: None,
        first: "swimming",
        hits: 1,
    },
    Expectation {
        query: "kayak",
        tag: None,
        first: "kayak",
        hits: 1,
    },
    // One-letter typos in words longer than five letters.
    Expectation {
        query: "libary",
        tag: None,
        first: "library-hours",
        hits: 1,
    },
    Expectation {
        query: "profesor",
        tag: None,
        first: "professor",
        hits: 1,
    },
    Expectation {
        query: "chemestry",
        tag: None,
        first: "chemistry",
        hits: 1,
    },
    Expectation {
        query: "baskteball",
        tag: None,
        first: "basketball",
        hits: 1,
    },
    Expectation {
        query: "intenrship",
        tag: None,
        first: "internship",
        hits: 1,
    },
    // Several words, mixed languages, tags.
    Expectation {
        query: "wireless network",
        tag: None,
        first: "wifi",
        hits: 1,
    },
    Expectation {
        query: "internship 实习",
        tag: None,
        first: "internship",
        hits: 1,
    },
    Expectation {
        query: "basketball",
        tag: Some("sport"),
        first: "basketball",
        hits: 1,
    },
];

/// Queries whose words some post has but whose tag filter excludes it.
pub const FILTERED_OUT: &[(&str, &str)] = &[("basketball", "food"), ("自习室", "sport")];

/// The broad queries: every English filler says `week`, every Chinese one `今天`.
pub const BROAD_EN: &str = "week";
pub const BROAD_ZH: &str = "今天";

const EN_SUBJECTS: &[&str] = &[
    "Linear algebra",
    "Macroeconomics",
    "Art history",
    "Statistics",
    "Philosophy",
    "Marketing",
];
const EN_THINGS: &[&str] = &[
    "desk lamp",
    "kettle",
    "umbrella",
    "guitar",
    "rice cooker",
    "bookshelf",
    "monitor",
];
const EN_PLACES: &[&str] = &[
    "north gate",
    "east lawn",
    "teaching building",
    "bus stop",
    "bakery",
    "print shop",
];
const ZH_PLACES: &[&str] = &[
    "操场",
    "南门",
    "北门",
    "湖边",
    "花园",
    "体育馆",
    "实验楼",
    "小吃街",
];
const ZH_DOINGS: &[&str] = &[
    "散步",
    "背单词",
    "晒太阳",
    "拍晚霞",
    "打羽毛球",
    "吃烧烤",
    "弹吉他",
    "看日落",
];
const ZH_FEELINGS: &[&str] = &[
    "心情不错",
    "有点累",
    "风很大",
    "人好多",
    "特别安静",
    "好热啊",
];

/// The whole corpus: the targets, then `fillers` fillers (at least 200 posts in all with the
/// default of 190).
pub fn posts(fillers: usize) -> Vec<CorpusPost> {
    let mut out: Vec<CorpusPost> = TARGETS
        .iter()
        .enumerate()
        .map(|(i, (key, title, body, tags))| CorpusPost {
            key: (*key).to_owned(),
            title: Some((*title).to_owned()),
            body: (*body).to_owned(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            anonymous: i % 2 == 0,
            comments: TARGET_COMMENTS
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, c)| (*c).to_owned())
                .collect(),
        })
        .collect();
    for i in 0..fillers {
        let pick = |list: &[&'static str], salt: usize| list[(i * 7 + salt) % list.len()];
        let (title, body) = if i % 2 == 0 {
            (
                format!("{} notes, week {}", pick(EN_SUBJECTS, 0), i % 16 + 1),
                format!(
                    "Selling a {} near the {} this week. Also sharing my {} notes.",
                    pick(EN_THINGS, 1),
                    pick(EN_PLACES, 2),
                    pick(EN_SUBJECTS, 3)
                ),
            )
        } else {
            (
                format!("今天在{}{}", pick(ZH_PLACES, 0), pick(ZH_DOINGS, 1)),
                format!(
                    "今天下午在{}{}，{}。",
                    pick(ZH_PLACES, 2),
                    pick(ZH_DOINGS, 3),
                    pick(ZH_FEELINGS, 4)
                ),
            )
        };
        out.push(CorpusPost {
            key: format!("filler-{i}"),
            title: Some(title),
            body,
            tags: vec![if i % 3 == 0 { "daily" } else { "misc" }.to_owned()],
            anonymous: i % 3 == 1,
            comments: if i % 5 == 0 {
                vec![format!("+{i}"), "同感".to_owned()]
            } else {
                vec![]
            },
        });
    }
    out
}

/// How many fillers say `week` and `今天` among `fillers`.
pub fn broad_hits(fillers: usize) -> (usize, usize) {
    (fillers.div_ceil(2), fillers / 2)
}
