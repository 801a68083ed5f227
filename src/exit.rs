//! The one place that owns exit codes: every way the binaries can end maps to a `ReturnCode`,
//! and the numbers and names are those of usrsvc 1.5.13 (spec §2), so scripts keep working.

/// Exit codes of `usrsvc` and `usrsvcd`, numbered as the Python tool numbered them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReturnCode {
    Success,
    GeneralFailure,
    TryAgain,
    InvalidConfig,
    InvalidAction,
    ProgramDisabled,
    ProgramUndefined,
    ProgramExitedUnexpectedly,
    UsrsvcdAlreadyRunning,
    InsufficientPermissions,
    ProgramFailedToLaunch,
    HelpMessage,
    /// New in 2.0: `kill_switch_file` exists and `--force` was not given.
    KillSwitchEngaged,
    /// New in 2.0: `require_reason = true` and no `--reason`.
    ReasonRequired,
    /// New in 2.0: the daemon's delegation rules refused a caller (which rule is said).
    NotPermitted,
    /// New in 2.0: no daemon answers on the socket asked for (`--user`, `events`).
    DaemonUnreachable,
    UnknownFailure,
}

impl ReturnCode {
    pub const ALL: [ReturnCode; 17] = [
        ReturnCode::Success,
        ReturnCode::GeneralFailure,
        ReturnCode::TryAgain,
        ReturnCode::InvalidConfig,
        ReturnCode::InvalidAction,
        ReturnCode::ProgramDisabled,
        ReturnCode::ProgramUndefined,
        ReturnCode::ProgramExitedUnexpectedly,
        ReturnCode::UsrsvcdAlreadyRunning,
        ReturnCode::InsufficientPermissions,
        ReturnCode::ProgramFailedToLaunch,
        ReturnCode::HelpMessage,
        ReturnCode::KillSwitchEngaged,
        ReturnCode::ReasonRequired,
        ReturnCode::NotPermitted,
        ReturnCode::DaemonUnreachable,
        ReturnCode::UnknownFailure,
    ];

    pub fn code(self) -> u8 {
        match self {
            ReturnCode::Success => 0,
            ReturnCode::GeneralFailure => 1,
            ReturnCode::TryAgain => 11,
            ReturnCode::InvalidConfig => 130,
            ReturnCode::InvalidAction => 131,
            ReturnCode::ProgramDisabled => 132,
            ReturnCode::ProgramUndefined => 133,
            ReturnCode::ProgramExitedUnexpectedly => 134,
            ReturnCode::UsrsvcdAlreadyRunning => 135,
            ReturnCode::InsufficientPermissions => 136,
            ReturnCode::ProgramFailedToLaunch => 137,
            ReturnCode::HelpMessage => 138,
            ReturnCode::KillSwitchEngaged => 139,
            ReturnCode::ReasonRequired => 140,
            ReturnCode::NotPermitted => 142,
            ReturnCode::DaemonUnreachable => 143,
            ReturnCode::UnknownFailure => 254,
        }
    }

    /// The name the Python tool printed in messages such as `Err=137 (PROGRAM_FAILED_TO_LAUNCH)`.
    pub fn name(self) -> &'static str {
        match self {
            ReturnCode::Success => "SUCCESS",
            ReturnCode::GeneralFailure => "GENERAL_FAILURE",
            ReturnCode::TryAgain => "TRY_AGAIN",
            ReturnCode::InvalidConfig => "INVALID_CONFIG",
            ReturnCode::InvalidAction => "INVALID_ACTION",
            ReturnCode::ProgramDisabled => "PROGRAM_DISABLED",
            ReturnCode::ProgramUndefined => "PROGRAM_UNDEFINED",
            ReturnCode::ProgramExitedUnexpectedly => "PROGRAM_EXITED_UNEXPECTEDLY",
            ReturnCode::UsrsvcdAlreadyRunning => "USRSVCD_ALREADY_RUNNING",
            ReturnCode::InsufficientPermissions => "INSUFFICIENT_PERMISSIONS",
            ReturnCode::ProgramFailedToLaunch => "PROGRAM_FAILED_TO_LAUNCH",
            ReturnCode::HelpMessage => "HELP_MESSAGE",
            ReturnCode::KillSwitchEngaged => "KILL_SWITCH_ENGAGED",
            ReturnCode::ReasonRequired => "REASON_REQUIRED",
            ReturnCode::NotPermitted => "NOT_PERMITTED",
            ReturnCode::DaemonUnreachable => "DAEMON_UNREACHABLE",
            ReturnCode::UnknownFailure => "UNKNOWN_FAILURE",
        }
    }

    pub fn from_code(code: i32) -> Option<ReturnCode> {
        ReturnCode::ALL
            .into_iter()
            .find(|rc| i32::from(rc.code()) == code)
    }

    /// `code (NAME)`, the form used in failure messages, `UNKNOWN(<v>)` for unlisted values.
    pub fn describe_code(code: i32) -> String {
        match ReturnCode::from_code(code) {
            Some(rc) => format!("{code} ({})", rc.name()),
            None => format!("{code} (UNKNOWN({code}))"),
        }
    }

    pub fn is_success(self) -> bool {
        self == ReturnCode::Success
    }
}

impl From<ReturnCode> for std::process::ExitCode {
    fn from(rc: ReturnCode) -> Self {
        std::process::ExitCode::from(rc.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        for rc in ReturnCode::ALL {
            assert_eq!(ReturnCode::from_code(i32::from(rc.code())), Some(rc));
        }
        assert_eq!(
            ReturnCode::describe_code(137),
            "137 (PROGRAM_FAILED_TO_LAUNCH)"
        );
        assert_eq!(ReturnCode::describe_code(7), "7 (UNKNOWN(7))");
    }
}
