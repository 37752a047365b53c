//! The syntax tree after JSONata's path flattening: `a.b[0].c` is one `Path` with
//! steps, predicates attached to the step they follow, group-by on the path.

use std::rc::Rc;

/// An expression node; `pos` on the nodes that can fail says where.
pub enum Node {
    Num(f64),
    Str(Rc<str>),
    Bool(bool),
    Null,
    Regex(Rc<regex::Regex>),
    /// A field name (only as a path step).
    Name(Rc<str>),
    /// `$name`; `$` is `""` and `$$` is `"$"`.
    Var(String, usize),
    Wildcard,
    Descendant,
    /// `%`: the parent of the context item.
    Parent(usize),
    Path(Box<Path>),
    Neg(Box<Node>, usize),
    Binary(BinOp, Box<Node>, Box<Node>, usize),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    /// Array constructor; `cons` when it is the first or last step of a path (not flattened).
    Array(Vec<Node>, bool),
    /// Object constructor (a group-by over the context).
    Object(Vec<(Node, Node)>, usize),
    /// Predicates on a non-path expression (`$x[0]`), and `[]` (keep singleton arrays).
    Filter(Box<Node>, Vec<Node>, bool),
    /// Group-by on a non-path expression.
    Group(Box<Node>, Vec<(Node, Node)>, usize),
    /// `^(...)` as a path step: (term, descending).
    Sort(Vec<(Node, bool)>, usize),
    Cond(Box<Node>, Box<Node>, Option<Box<Node>>),
    /// `a ?: b`
    Elvis(Box<Node>, Box<Node>),
    /// `a ?? b`
    Coalesce(Box<Node>, Box<Node>),
    Block(Vec<Node>),
    Bind(String, Box<Node>),
    Lambda(
        Rc<Vec<String>>,
        Rc<Node>,
        Option<Rc<crate::signature::Signature>>,
    ),
    Call(Box<Node>, Vec<Node>, usize),
    /// `?` in an argument list (partial application).
    Placeholder,
    /// `a ~> f`
    Apply(Box<Node>, Box<Node>, usize),
    Range(Box<Node>, Box<Node>, usize),
    /// `| pattern | update [, delete] |`: a function that copies its argument with
    /// the objects matched by `pattern` updated.
    Transform(Rc<Transform>),
}

pub struct Transform {
    pub pattern: Node,
    pub update: Node,
    pub delete: Option<Node>,
    pub pos: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Concat,
    In,
}

/// A path: steps applied in turn, each mapping over the previous step's sequence.
pub struct Path {
    pub steps: Vec<Step>,
    pub keep_singleton: bool,
    pub group: Option<(Vec<(Node, Node)>, usize)>,
}

/// One step: an expression evaluated per item, then its predicates.
pub struct Step {
    pub expr: Node,
    pub stages: Vec<Stage>,
    /// `@$name`: bind each result to `$name` and keep the previous context.
    pub focus: Option<String>,
    /// `#$name`: bind each result's position to `$name`.
    pub index: Option<String>,
    /// From this step on the path carries variable bindings (a tuple stream).
    pub tuple: bool,
}

impl Step {
    pub fn new(expr: Node) -> Step {
        Step {
            expr,
            stages: Vec::new(),
            focus: None,
            index: None,
            tuple: false,
        }
    }
}

/// What follows a step: a predicate, or a `#$name` after predicates.
pub enum Stage {
    Filter(Node),
    Index(String),
}
