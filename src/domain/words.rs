//! Enums that stand for words: their text, and the error for a word that is none of them.

/// A word that names none of the values of its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{given}`: expected one of {}", expected.join(", "))]
pub struct UnknownWord {
    pub kind: &'static str,
    pub given: String,
    pub expected: Vec<&'static str>,
}

impl UnknownWord {
    pub fn new(
        kind: &'static str,
        given: &str,
        expected: impl IntoIterator<Item = &'static str>,
    ) -> Self {
        Self {
            kind,
            given: given.to_string(),
            expected: expected.into_iter().collect(),
        }
    }
}

/// `ALL`, `as_str`, `Display` and `FromStr` (an [`UnknownWord`] naming the expected words)
/// for an enum whose variants each stand for one word.
macro_rules! words {
    ($name:ident, $kind:literal, [$($variant:ident = $text:literal),+ $(,)?]) => {
        impl $name {
            /// Every value, in the order of the enum.
            pub const ALL: [$name; [$($text),+].len()] = [$(Self::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::domain::UnknownWord;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($text => Ok(Self::$variant),)+
                    _ => Err($crate::domain::UnknownWord::new(
                        $kind,
                        text,
                        Self::ALL.map(Self::as_str),
                    )),
                }
            }
        }
    };
}

pub(super) use words;
