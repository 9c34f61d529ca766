/** Reported to the control plane at enrolment and in every inventory snapshot. */
export const AGENT_VERSION = '0.1.0';
