#!/usr/bin/env python3
"""Builds tests/data/seed-121.jsonl: the seed study's 121 telephone interviews.

The seed report (NIJ, "Law Enforcement Response to Human Trafficking",
c. 2005) publishes toplines, not microdata. This script constructs 121
interviews (84 State/local investigators, 30 police/line officers, 7
victim-witness coordinators; the Federal form had no respondents) in the
docs/submissions.md format whose toplines reproduce the report's published
percentages, and writes the findings it reproduces to
tests/data/seed-findings.json.

Deterministic (fixed seed, standard library only). Run from anywhere:

    python3 tests/data/make_seed_dataset.py

Rules (the same as fieldwatch's results, see docs/instruments.md):
- shares use valid answers only: blanks, legitimate skips and missing codes
  ({"missing": "dk"}) are not in the denominator;
- a multi-select option counts once per respondent who answered the item;
- boxes on a 1-5 scale with box_size 2: low = 1-2, middle = 3, high = 4-5 for
  ascending items; for the descending (reverse-worded) communication item the
  high box is 1-2;
- percentages are share * 100 rounded to a whole percent.

After writing, the script reads the JSONL back, checks that the dataset is
clean (kinds and ranges, relevance, required items, straightlining, unique
respondents and answer sets) and recomputes every finding; it exits non-zero
if anything does not hold.
"""

import datetime as dt
import json
import math
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_JSONL = os.path.join(HERE, "seed-121.jsonl")
OUT_FINDINGS = os.path.join(HERE, "seed-findings.json")
STUDY = "le-trafficking"
SEED = 20050307

# ---------------------------------------------------------------------------
# The instrument, as far as the dataset needs it (mirrors
# config/instruments/le-trafficking.yaml; the Rust test checks the real one).

OPTIONS = {
    "years_in_position": ["up_to_1_year", "1_to_2_years", "2_to_3_years", "3_to_5_years", "over_5_years"],
    "languages": ["none", "spanish", "chinese", "mandarin", "portuguese", "romanian", "other_language"],
    "first_learned": ["law_enforcement_activities", "training_conference", "task_force",
                      "ngo_victim_services", "media", "other"],
    "state_law": ["has_law", "no_law", "pending", "not_sure"],
    "trafficking_environments": ["forced_prostitution", "domestic_servitude", "sex_labor",
                                 "agricultural_labor", "restaurant_service", "factory_sweatshop",
                                 "construction", "other"],
    "case_experience_years": ["under_1", "1_to_2", "3_to_4", "5_to_8", "9_or_more"],
    "cases_worked": ["none", "1_to_5", "6_to_10", "11_to_20", "over_20"],
    "case_duration": ["under_1_week", "1_to_4_weeks", "1_to_6_months", "over_6_months", "varies"],
    "red_flags": ["restricted_movement", "nervous_about_entry", "no_english_speakers",
                  "one_person_speaks", "frequent_movement", "no_belongings_documents",
                  "no_free_time", "crowded_residence", "business_front", "other"],
    "case_sources": ["other_investigations", "citizens", "other_law_enforcement", "task_force",
                     "vsp_cbo_referral", "other"],
    "roles": ["covert_overt_operations", "follow_up_leads", "surveillance", "interview_victims",
              "work_with_state_local_le", "work_with_federal_le", "first_response",
              "gather_evidence", "arrests", "refer_victims", "victim_support", "other"],
    "protocol_status": ["in_place", "in_development", "not_in_place", "unaware"],
    "barriers": ["victim_distrust", "lack_of_training", "lack_of_resources", "language_barriers",
                 "victim_not_seen_as_victim", "lack_of_time", "closed_communities",
                 "lack_of_public_awareness", "hard_to_find_cases", "other"],
    "victim_work_knowledge": ["on_the_job", "formal_training", "vsp_ngo", "task_force",
                              "other_victim_work", "other"],
    "services": ["housing", "medical", "counseling", "advocacy", "legal", "food",
                 "service_coordination", "mental_health", "clothing", "interpretation",
                 "immigration", "other"],
    "apprehension": ["fear_of_deportation", "distrust_justice_system", "fear_of_retaliation",
                     "distrust_police", "language_barrier", "not_seeing_self_as_victim",
                     "shame_trauma", "debt_bondage", "other"],
    "training_sources": ["federal_le_events", "on_the_job", "vsp_training", "state_local_le_events",
                         "task_force", "other"],
    "most_vital": ["federal_le", "state_local_le", "prosecutors", "victim_service_providers",
                   "interpreters", "task_force", "other"],
    "additional_resources": ["education_training", "task_forces", "funding_grants", "personnel",
                             "interpreters", "victim_services", "information_sharing", "other"],
}

TA = ["ta_understanding_issue", "ta_tvpa_laws", "ta_le_role", "ta_identifying_methods",
      "ta_investigating_methods", "ta_prosecutor_role", "ta_le_collaboration", "ta_vsp_role",
      "ta_vsp_collaboration", "ta_victim_rights", "ta_interviewing_methods", "ta_response_impact"]

# code -> (kind, parameter): scale -> "asc"/"desc"; choice -> option list name.
KINDS = {
    "position_description": ("text", None),
    "years_in_position": ("single_choice", "years_in_position"),
    "languages": ("multi_select", "languages"),
    "first_learned": ("single_choice", "first_learned"),
    "trafficking_definition": ("text", None),
    "trafficking_smuggling_difference": ("yes_no", None),
    "knowledge": ("scale", "asc"),
    "tvpa_familiarity": ("scale", "asc"),
    "tvpra_2003_familiarity": ("scale", "asc"),
    "le_agencies_familiarity": ("scale", "asc"),
    "state_law": ("single_choice", "state_law"),
    "problem_seriousness": ("scale", "asc"),
    "agency_priority": ("scale", "asc"),
    "task_force": ("yes_no", None),
    "victims_male": ("count", 500),
    "victims_female": ("count", 500),
    "victims_transgender": ("count", 500),
    "victims_total": ("count", 500),
    "victims_juvenile": ("count", 500),
    "victims_adult": ("count", 500),
    "trafficking_environments": ("multi_select", "trafficking_environments"),
    "case_experience_years": ("single_choice", "case_experience_years"),
    "cases_worked": ("single_choice", "cases_worked"),
    "case_duration": ("single_choice", "case_duration"),
    "red_flags": ("multi_select", "red_flags"),
    "case_sources": ("multi_select", "case_sources"),
    "investigative_methods": ("multi_select", "roles"),
    "primary_role": ("multi_select", "roles"),
    "most_vital": ("multi_select", "most_vital"),
    "continued_presence_familiarity": ("scale", "asc"),
    "continued_presence_role": ("text", None),
    "identification_protocols": ("single_choice", "protocol_status"),
    "protocol_usefulness": ("scale", "asc"),
    "case_differences": ("text", None),
    "case_outcome": ("text", None),
    "barriers_identifying": ("multi_select", "barriers"),
    "barriers_responding": ("multi_select", "barriers"),
    "victim_work_knowledge": ("multi_select", "victim_work_knowledge"),
    "services_needed": ("multi_select", "services"),
    "referral_confidence": ("scale", "asc"),
    "provider_adequacy": ("scale", "asc"),
    "vsp_protocols": ("single_choice", "protocol_status"),
    "victim_safety": ("text", None),
    "victim_differences": ("text", None),
    "communication_challenge": ("scale", "desc"),
    "victim_cooperation": ("scale", "asc"),
    "apprehension_reasons": ("multi_select", "apprehension"),
    "training_sources": ("multi_select", "training_sources"),
    "additional_resources": ("multi_select", "additional_resources"),
    "lesson_learned": ("text", None),
}
for c in TA:
    KINDS[c] = ("yes_no_na", None)

REQUIRED = {
    "years_in_position", "languages", "first_learned", "trafficking_smuggling_difference",
    "knowledge", "tvpa_familiarity", "tvpra_2003_familiarity", "le_agencies_familiarity",
    "state_law", "problem_seriousness", "agency_priority", "task_force", "case_experience_years",
    "cases_worked", "continued_presence_familiarity", "identification_protocols",
    "protocol_usefulness", "referral_confidence", "provider_adequacy", "vsp_protocols",
    "communication_challenge", "victim_cooperation", *TA,
}


def grid(first):
    return [(f"q{first}{'abcdefghijkl'[i]}", c) for i, c in enumerate(TA)]


# Each form: its items in order as (id, code).
FORMS = {
    "investigator": [
        ("q1_position", "position_description"), ("q1_years", "years_in_position"),
        ("q2", "languages"), ("q3", "first_learned"), ("q4", "trafficking_definition"),
        ("q5", "trafficking_smuggling_difference"), ("q6", "knowledge"), ("q7", "tvpa_familiarity"),
        ("q8", "tvpra_2003_familiarity"), ("q9", "state_law"), ("q10", "problem_seriousness"),
        ("q11", "agency_priority"), ("q12", "task_force"), ("q13_male", "victims_male"),
        ("q13_female", "victims_female"), ("q13_transgender", "victims_transgender"),
        ("q14_juvenile", "victims_juvenile"), ("q14_adult", "victims_adult"),
        ("q15", "trafficking_environments"), ("q16", "case_experience_years"),
        ("q17", "cases_worked"), ("q18", "case_duration"), ("q19", "red_flags"),
        ("q20", "case_sources"), ("q21", "investigative_methods"),
        ("q23", "continued_presence_familiarity"), ("q24", "continued_presence_role"),
        ("q25", "identification_protocols"), ("q26", "protocol_usefulness"),
        ("q27", "case_differences"), ("q28", "case_outcome"), ("q29", "barriers_identifying"),
        ("q30", "barriers_responding"), ("q31", "victim_work_knowledge"),
        ("q32", "services_needed"), ("q33", "referral_confidence"), ("q34", "provider_adequacy"),
        ("q35", "vsp_protocols"), ("q36", "victim_safety"), ("q38", "communication_challenge"),
        ("q39", "victim_cooperation"), ("q40", "apprehension_reasons"),
        ("q41", "training_sources"), *grid(42), ("q43", "additional_resources"),
        ("q44", "lesson_learned"),
    ],
    "line_officer": [
        ("q1_position", "position_description"), ("q1_years", "years_in_position"),
        ("q2", "languages"), ("q3", "first_learned"), ("q4", "trafficking_definition"),
        ("q5", "trafficking_smuggling_difference"), ("q6", "knowledge"), ("q7", "tvpa_familiarity"),
        ("q8", "tvpra_2003_familiarity"), ("q9", "state_law"), ("q10", "problem_seriousness"),
        ("q11", "agency_priority"), ("q12", "victims_total"), ("q13_juvenile", "victims_juvenile"),
        ("q13_adult", "victims_adult"), ("q14", "trafficking_environments"),
        ("q15", "case_experience_years"), ("q16", "cases_worked"), ("q17", "case_duration"),
        ("q18", "red_flags"), ("q19", "case_sources"), ("q20", "primary_role"),
        ("q21", "continued_presence_familiarity"), ("q22", "continued_presence_role"),
        ("q23", "identification_protocols"), ("q24", "protocol_usefulness"),
        ("q25", "case_differences"), ("q26", "case_outcome"), ("q27", "barriers_identifying"),
        ("q28", "barriers_responding"), ("q29", "victim_work_knowledge"),
        ("q30", "services_needed"), ("q31", "referral_confidence"), ("q32", "provider_adequacy"),
        ("q33", "vsp_protocols"), ("q34", "victim_safety"), ("q35", "victim_differences"),
        ("q36", "communication_challenge"), ("q37", "victim_cooperation"),
        ("q38", "apprehension_reasons"), ("q39", "training_sources"), *grid(40),
        ("q41", "additional_resources"), ("q42", "lesson_learned"),
    ],
    "victim_witness": [
        ("q1_position", "position_description"), ("q1_years", "years_in_position"),
        ("q2", "languages"), ("q3", "first_learned"), ("q4", "trafficking_definition"),
        ("q5", "trafficking_smuggling_difference"), ("q6", "knowledge"), ("q7", "tvpa_familiarity"),
        ("q8", "tvpra_2003_familiarity"), ("q9", "le_agencies_familiarity"), ("q10", "state_law"),
        ("q11", "task_force"), ("q12", "problem_seriousness"), ("q13", "agency_priority"),
        ("q14", "victims_total"), ("q15_juvenile", "victims_juvenile"),
        ("q15_adult", "victims_adult"), ("q16", "trafficking_environments"),
        ("q17", "case_experience_years"), ("q18", "cases_worked"), ("q19", "case_duration"),
        ("q20", "case_sources"), ("q21", "primary_role"), ("q22", "most_vital"),
        ("q23", "continued_presence_familiarity"), ("q24", "continued_presence_role"),
        ("q25", "identification_protocols"), ("q26", "protocol_usefulness"),
        ("q27", "case_differences"), ("q28", "case_outcome"), ("q29", "barriers_identifying"),
        ("q30", "barriers_responding"), ("q31", "victim_work_knowledge"),
        ("q32", "services_needed"), ("q33", "referral_confidence"), ("q34", "provider_adequacy"),
        ("q35", "vsp_protocols"), ("q36", "victim_safety"), ("q37", "victim_differences"),
        ("q38", "communication_challenge"), ("q39", "victim_cooperation"),
        ("q40", "apprehension_reasons"), ("q41", "training_sources"), *grid(42),
        ("q43", "additional_resources"), ("q44", "lesson_learned"),
    ],
}


def _gt0(v):
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _ne(v, s):
    return isinstance(v, str) and v != s


def _ge(v, n):
    return isinstance(v, int) and not isinstance(v, bool) and v >= n


# Relevance conditions by form and item id, over the answers by item id (a
# missing code or blank makes every comparison false, as in fieldwatch).
INV_VICTIMS = lambda a: _gt0(a.get("q13_male")) or _gt0(a.get("q13_female")) or _gt0(a.get("q13_transgender"))
RELEVANT = {
    "investigator": {
        "q14_juvenile": INV_VICTIMS, "q14_adult": INV_VICTIMS, "q36": INV_VICTIMS,
        "q16": lambda a: _ne(a.get("q17"), "none"), "q18": lambda a: _ne(a.get("q17"), "none"),
        "q28": lambda a: _ne(a.get("q17"), "none"), "q24": lambda a: _ge(a.get("q23"), 2),
    },
    "line_officer": {
        "q13_juvenile": lambda a: _gt0(a.get("q12")), "q13_adult": lambda a: _gt0(a.get("q12")),
        "q15": lambda a: _ne(a.get("q16"), "none"), "q17": lambda a: _ne(a.get("q16"), "none"),
        "q26": lambda a: _ne(a.get("q16"), "none"), "q22": lambda a: _ge(a.get("q21"), 2),
    },
    "victim_witness": {
        "q15_juvenile": lambda a: _gt0(a.get("q14")), "q15_adult": lambda a: _gt0(a.get("q14")),
        "q17": lambda a: _ne(a.get("q18"), "none"), "q19": lambda a: _ne(a.get("q18"), "none"),
        "q28": lambda a: _ne(a.get("q18"), "none"), "q24": lambda a: _ge(a.get("q23"), 2),
    },
}

MISSING = {"dk", "rf", "na"}
POSITIONS = [("investigator", 84), ("line_officer", 30), ("victim_witness", 7)]
INV, LO, VW = "investigator", "line_officer", "victim_witness"

# ---------------------------------------------------------------------------
# Target distributions. Scale tables are per position: {value: count}, with
# "dk"/"rf" for missing codes. Comments give the report's numbers.

SCALES = {
    # Fig. 7: 57% knowledgeable to very knowledgeable (4-5), 25% somewhat,
    # 18% minimal; investigators 64%, line officers 34% (one line officer
    # did not answer: 10/29; 10/30 would be 33%).
    "knowledge": {
        INV: {1: 4, 2: 11, 3: 15, 4: 30, 5: 24},
        LO: {1: 1, 2: 5, 3: 13, 4: 8, 5: 2, "dk": 1},
        VW: {2: 1, 3: 2, 4: 3, 5: 1},
    },
    # Fig. 8: 35% not/minimally familiar with the TVPA, 44% familiar/very.
    "tvpa_familiarity": {
        INV: {1: 10, 2: 16, 3: 17, 4: 27, 5: 14},
        LO: {1: 6, 2: 8, 3: 8, 4: 6, 5: 2},
        VW: {2: 2, 3: 1, 4: 3, 5: 1},
    },
    # 2003 reauthorization: investigators 39% / 32% / 29%; line officers half
    # not/minimal, half somewhat.
    "tvpra_2003_familiarity": {
        INV: {1: 14, 2: 19, 3: 27, 4: 17, 5: 7},
        LO: {1: 7, 2: 8, 3: 15},
        VW: {1: 1, 2: 1, 3: 2, 4: 2, 5: 1},
    },
    "le_agencies_familiarity": {VW: {3: 1, 4: 3, 5: 3}},
    # Fig. 10 / exec. summary: 36% serious or very serious (one refusal).
    "problem_seriousness": {
        INV: {1: 3, 2: 10, 3: 37, 4: 22, 5: 12},
        LO: {1: 3, 2: 8, 3: 13, 4: 4, 5: 1, "rf": 1},
        VW: {2: 1, 3: 2, 4: 2, 5: 2},
    },
    # Fig. 11: 20% not/minor, 22% somewhat, 58% high/very high priority;
    # investigators 61%, line officers 40%.
    "agency_priority": {
        INV: {1: 5, 2: 11, 3: 17, 4: 29, 5: 22},
        LO: {1: 3, 2: 5, 3: 10, 4: 9, 5: 3},
        VW: {4: 4, 5: 3},
    },
    # Fig. 15: 40% not at all / minimally familiar with continued presence,
    # no significant difference by position.
    "continued_presence_familiarity": {
        INV: {1: 13, 2: 21, 3: 24, 4: 18, 5: 8},
        LO: {1: 5, 2: 7, 3: 11, 4: 5, 5: 2},
        VW: {1: 1, 2: 1, 3: 2, 4: 2, 5: 1},
    },
    # Protocols useful to very useful 79%, somewhat 14%.
    "protocol_usefulness": {
        INV: {1: 2, 2: 3, 3: 11, 4: 28, 5: 40},
        LO: {1: 1, 2: 2, 3: 5, 4: 12, 5: 10},
        VW: {3: 1, 4: 2, 5: 4},
    },
    # Fig. 20: 73% confident to very confident; investigators 82%, line
    # officers 45% (13/29, one line officer did not answer).
    "referral_confidence": {
        INV: {1: 1, 2: 4, 3: 10, 4: 38, 5: 31},
        LO: {1: 4, 2: 8, 3: 4, 4: 10, 5: 3, "dk": 1},
        VW: {3: 1, 4: 3, 5: 3},
    },
    "provider_adequacy": {
        INV: {1: 6, 2: 18, 3: 38, 4: 15, 5: 4, "dk": 3},
        LO: {1: 3, 2: 9, 3: 12, 4: 4, 5: 1, "dk": 1},
        VW: {2: 2, 3: 3, 4: 2},
    },
    # Fig. 21: 63% challenging to very challenging (1-2 on the reverse-worded
    # scale); line officers 78% (21/27, three had not worked with victims).
    "communication_challenge": {
        INV: {1: 18, 2: 30, 3: 24, 4: 9, 5: 3},
        LO: {1: 9, 2: 12, 3: 4, 4: 2, "dk": 3},
        VW: {1: 2, 2: 3, 3: 2},
    },
    # Fig. 22: 48% not/minimally cooperative; line officers 71% (17/24),
    # investigators 46% (38/83).
    "victim_cooperation": {
        INV: {1: 12, 2: 26, 3: 28, 4: 13, 5: 4, "dk": 1},
        LO: {1: 7, 2: 10, 3: 5, 4: 2, "dk": 6},
        VW: {3: 3, 4: 3, 5: 1},
    },
}

# Which latent trait a scale follows (for realistic correlations).
LATENT = {
    "knowledge": "k", "tvpa_familiarity": "k", "tvpra_2003_familiarity": "k",
    "continued_presence_familiarity": "k", "referral_confidence": "k",
    "le_agencies_familiarity": "k", "problem_seriousness": "c", "agency_priority": "c",
    "protocol_usefulness": "u", "provider_adequacy": "u", "communication_challenge": "r",
    "victim_cooperation": "r",
}

SINGLE = {
    # Fig. 6: 48% regular law enforcement activities, 27% training/conferences;
    # the victim-witness coordinators first heard from NGOs/VSPs.
    "first_learned": {
        INV: {"law_enforcement_activities": 43, "training_conference": 24, "task_force": 5,
              "ngo_victim_services": 4, "media": 6, "other": 2},
        LO: {"law_enforcement_activities": 15, "training_conference": 8, "task_force": 5, "media": 2},
        VW: {"ngo_victim_services": 6, "training_conference": 1},
    },
    # Fig. 3: one-third (33%) 0 to 1 year in their position, average 2.6.
    "years_in_position": {
        INV: {"up_to_1_year": 26, "1_to_2_years": 15, "2_to_3_years": 14, "3_to_5_years": 15, "over_5_years": 14},
        LO: {"up_to_1_year": 12, "1_to_2_years": 5, "2_to_3_years": 5, "3_to_5_years": 4, "over_5_years": 4},
        VW: {"up_to_1_year": 2, "1_to_2_years": 1, "2_to_3_years": 1, "3_to_5_years": 2, "over_5_years": 1},
    },
    # Fig. 9: 59% say their State has a trafficking law.
    "state_law": {
        INV: {"has_law": 52, "no_law": 14, "pending": 6, "not_sure": 12},
        LO: {"has_law": 15, "no_law": 6, "pending": 1, "not_sure": 8},
        VW: {"has_law": 4, "no_law": 2, "pending": 1},
    },
    # 80% see a difference between trafficking and smuggling.
    "trafficking_smuggling_difference": {
        INV: {"yes": 70, "no": 14}, LO: {"yes": 21, "no": 9}, VW: {"yes": 6, "no": 1},
    },
    # 71% of investigators work with a task force (the line-officer form has
    # no task force question).
    "task_force": {INV: {"yes": 60, "no": 24}, VW: {"yes": 5, "no": 2}},
    # Fig. 16: 71% have a formal protocol or are developing one.
    "identification_protocols": {
        INV: {"in_place": 46, "in_development": 18, "not_in_place": 16, "unaware": 4},
        LO: {"in_place": 11, "in_development": 6, "not_in_place": 10, "unaware": 3},
        VW: {"in_place": 4, "in_development": 1, "not_in_place": 2},
    },
    # Protocols with victim service providers: 73% have/developing, 8%
    # unaware, 19% none.
    "vsp_protocols": {
        INV: {"in_place": 45, "in_development": 20, "not_in_place": 13, "unaware": 6},
        LO: {"in_place": 10, "in_development": 7, "not_in_place": 9, "unaware": 4},
        VW: {"in_place": 5, "in_development": 1, "not_in_place": 1},
    },
}

# Fig. 5: 32% no official case yet, 60% 1 to 5 cases, the rest more (up to 23).
CASES = {
    INV: {"none": 22, "1_to_5": 53, "6_to_10": 6, "11_to_20": 2, "over_20": 1},
    LO: {"none": 14, "1_to_5": 16},
    VW: {"none": 3, "1_to_5": 4},
}
# Of those with cases: 33% < 1 year, 41% 1-2, 19% 3-4, 7% 9+ (one don't know).
CASE_YEARS = {"under_1": 27, "1_to_2": 33, "3_to_4": 15, "9_or_more": 6, "dk": 1}
# Fig. 17: 44% of those with cases cannot give an average (it varies).
CASE_DURATION = {"varies": 36, "under_1_week": 5, "1_to_4_weeks": 12, "1_to_6_months": 19, "over_6_months": 10}

# Multi-selects: per-position option counts over those who answer, or pooled.
MULTI = {
    # Fig. 13: 32% other investigations, 30% citizens, 25% other officers.
    "case_sources": {
        INV: ({"other_investigations": 30, "citizens": 23, "other_law_enforcement": 19,
               "task_force": 9, "vsp_cbo_referral": 4, "other": 4}, 82),
        LO: ({"other_investigations": 8, "citizens": 12, "other_law_enforcement": 9,
              "task_force": 3, "vsp_cbo_referral": 1, "other": 2}, 30),
        VW: ({"citizens": 1, "other_law_enforcement": 2, "task_force": 2, "vsp_cbo_referral": 4}, 7),
    },
    # Fig. 14: line officers 70% covert/overt operations, 50% interviewing
    # victims, 20% working with other State/local LE, none Federal LE.
    "primary_role": {
        LO: ({"covert_overt_operations": 21, "interview_victims": 15, "work_with_state_local_le": 6,
              "follow_up_leads": 9, "surveillance": 8, "first_response": 10, "gather_evidence": 4,
              "arrests": 5, "refer_victims": 3}, 30),
        VW: ({"victim_support": 7, "refer_victims": 6, "interview_victims": 2, "work_with_federal_le": 2}, 7),
    },
    "investigative_methods": {
        INV: ({"follow_up_leads": 52, "surveillance": 47, "covert_overt_operations": 44,
               "interview_victims": 38, "work_with_federal_le": 17, "work_with_state_local_le": 3,
               "gather_evidence": 20, "arrests": 8, "other": 4}, 84),
    },
    "most_vital": {
        VW: ({"federal_le": 5, "victim_service_providers": 4, "prosecutors": 2, "state_local_le": 1}, 7),
    },
    # Section 1.11: Federal LE events 45%, on the job 25%, VSPs 11%, State and
    # local LE events 11%, task forces 5%.
    "training_sources": {
        INV: ({"federal_le_events": 43, "on_the_job": 18, "vsp_training": 8,
               "state_local_le_events": 7, "task_force": 4, "other": 4}, 84),
        LO: ({"federal_le_events": 9, "on_the_job": 12, "vsp_training": 1,
              "state_local_le_events": 5, "task_force": 2, "other": 1}, 30),
        VW: ({"federal_le_events": 2, "vsp_training": 4, "state_local_le_events": 1}, 7),
    },
}
# Pooled multi-selects: (option counts, respondents answering).
POOLED = {
    # Fig. 19: housing 65%, medical 39%, counseling 27%, advocacy 26%, legal
    # 26%, food 26%, coordination 24%, mental health 23%, clothing 18%.
    "services_needed": ({"housing": 77, "medical": 46, "counseling": 32, "advocacy": 31, "legal": 31,
                         "food": 31, "service_coordination": 28, "mental_health": 27, "clothing": 21,
                         "interpretation": 14, "immigration": 16, "other": 5}, 118),
    # Fig. 23: deportation 66%, distrust of the justice system 48%,
    # retaliation 46%.
    "apprehension_reasons": ({"fear_of_deportation": 80, "distrust_justice_system": 58,
                              "fear_of_retaliation": 56, "distrust_police": 25, "language_barrier": 15,
                              "not_seeing_self_as_victim": 18, "shame_trauma": 12, "debt_bondage": 10,
                              "other": 5}, 121),
    # Fig. 12: forced prostitution, then domestic servitude, sex laboring,
    # agricultural labor.
    "trafficking_environments": ({"forced_prostitution": 88, "domestic_servitude": 41, "sex_labor": 33,
                                  "agricultural_labor": 22, "restaurant_service": 18,
                                  "factory_sweatshop": 12, "construction": 9, "other": 6}, 120),
    # Fig. 18: victim distrust, lack of training, lack of resources, interpreters.
    "barriers_identifying": ({"victim_distrust": 52, "lack_of_training": 47, "lack_of_resources": 33,
                              "language_barriers": 30, "victim_not_seen_as_victim": 17, "lack_of_time": 12,
                              "closed_communities": 14, "lack_of_public_awareness": 15,
                              "hard_to_find_cases": 16, "other": 4}, 119),
    "barriers_responding": ({"victim_distrust": 49, "lack_of_training": 31, "lack_of_resources": 44,
                             "language_barriers": 41, "victim_not_seen_as_victim": 10, "lack_of_time": 18,
                             "closed_communities": 9, "lack_of_public_awareness": 6,
                             "hard_to_find_cases": 5, "other": 6}, 118),
    "victim_work_knowledge": ({"on_the_job": 68, "formal_training": 49, "vsp_ngo": 24, "task_force": 17,
                               "other_victim_work": 21, "other": 4}, 120),
    # Section 1.12: education and training, task forces, money and grants.
    "additional_resources": ({"education_training": 58, "task_forces": 37, "funding_grants": 33,
                              "personnel": 21, "interpreters": 15, "victim_services": 18,
                              "information_sharing": 16, "other": 7}, 115),
}
# Red flags: the victim-witness form has no red-flags question.
RED_FLAGS = ({"restricted_movement": 45, "nervous_about_entry": 31, "no_english_speakers": 27,
              "one_person_speaks": 24, "frequent_movement": 19, "no_belongings_documents": 18,
              "no_free_time": 11, "crowded_residence": 14, "business_front": 8, "other": 6}, 112)

# Fig. 24: identifying 76%, investigating/responding 74%, TVPA 74%,
# interviewing 74% answer "yes" (share over yes/no/n.a.).
TA_YES = {
    "ta_understanding_issue": (70, 4), "ta_tvpa_laws": (89, 2), "ta_le_role": (78, 3),
    "ta_identifying_methods": (92, 2), "ta_investigating_methods": (90, 3),
    "ta_prosecutor_role": (75, 4), "ta_le_collaboration": (80, 3), "ta_vsp_role": (77, 5),
    "ta_vsp_collaboration": (79, 5), "ta_victim_rights": (84, 3),
    "ta_interviewing_methods": (90, 2), "ta_response_impact": (82, 4),
}  # (yes, na); the rest "no"

# Fig. 1 region counts: Southeast 25%, Southwest 20%.
REGIONS = {"southeast": 30, "southwest": 24, "west": 19, "northeast": 18, "midwest": 13,
           "mid_atlantic": 10, "northwest": 7}
INTERVIEWERS = {"int01": 26, "int02": 24, "int03": 22, "int04": 20, "int05": 17, "int06": 12}

# Languages (Fig. 4): 65% English only, 22% Spanish, other 13%.
LANGUAGES = ([["none"]] * 79 + [["spanish"]] * 24 + [["spanish", "portuguese"]] * 2
             + [["spanish", "other_language"]] + [["chinese"]] * 3 + [["mandarin"]] * 2
             + [["portuguese"]] * 2 + [["romanian"]] + [["other_language"]] * 7)

# ---------------------------------------------------------------------------
# Text answers.

TEXT = {
    "position_description": {
        INV: ["Detective, vice unit", "Detective, sex crimes unit", "Sergeant, special investigations section",
              "Investigator, human trafficking unit", "Detective, organized crime unit",
              "Lieutenant, criminal investigations division", "Special agent, state bureau of investigation",
              "Deputy sheriff, criminal investigations", "Detective, gang and narcotics unit",
              "Sergeant, vice and intelligence", "Investigator, major crimes", "Detective, crimes against persons",
              "Captain, investigations bureau", "Investigator, anti-trafficking task force",
              "Detective, juvenile and missing persons", "Sergeant, human trafficking squad"],
        LO: ["Patrol officer", "Police officer, community policing", "Deputy sheriff, patrol division",
             "Police officer, downtown beat", "Officer, neighborhood response team", "Patrol sergeant",
             "Police officer, street crimes", "Officer, field operations"],
        VW: ["Victim-witness coordinator, police department", "Victim services coordinator, sheriff's office",
             "Victim advocate, police victim assistance unit", "Victim-witness specialist, county police"],
    },
    "trafficking_definition": [
        "Modern day slavery.", "Modern day slavery - people held against their will and forced to work.",
        "Persons deprived of liberty and forced into labor or prostitution.",
        "The trafficking of victims through force, fraud, or coercion for purposes of forced labor or sex.",
        "Transporting a person against their will as a commodity for monetary gain.",
        "People who are forced or coerced to work for another for a profit.",
        "When a person is taken against their will, forced to work without wages, and not free.",
        "Buying and selling people for sex or labor.", "Slavery; people used as property for profit.",
        "Recruiting or moving people by force or deception so someone can exploit them.",
        "Forced labor or forced prostitution, usually of immigrants.",
        "Holding someone in servitude through threats or debt.",
    ],
    "continued_presence_role": [
        "We request continued presence through ICE for the victim.",
        "Certify that the victim is cooperating with the investigation.",
        "The federal agent applies; we provide the information on the case.",
        "We identify the victim and refer to the federal agency that requests it.",
        "Law enforcement has to sponsor the request.", "Not sure of our exact role; the feds handle it.",
        "Document the victim's cooperation and contact the U.S. Attorney's office.",
    ],
    "case_differences": [
        "Victims do not come forward and do not see themselves as victims.",
        "They take much longer and need more resources.", "Language and cultural barriers.",
        "They involve several jurisdictions and federal agencies.",
        "The victim needs services before anything else can happen.",
        "More interviews, more time building trust.", "Immigration issues complicate everything.",
        "Organized groups and money across borders.", "",
    ],
    "case_outcome": [
        "Federal prosecution with guilty pleas.", "Prosecuted at the state level on related charges.",
        "Still under investigation.", "Suspects deported; no prosecution.",
        "Victims placed in services; case referred to federal prosecutors.",
        "Charged with promoting prostitution rather than trafficking.", "Mixed; some convictions.",
    ],
    "victim_safety": [
        "Place them in a shelter through a victim service provider.",
        "Move them to a safe house and keep the location confidential.",
        "Work with the NGO that provides housing and case management.",
        "Separate them from the traffickers right away and arrange housing.",
        "Protective custody until a shelter bed is found.", "Refer to the victim-witness coordinator.",
    ],
    "victim_differences": [
        "They are afraid of the police and of deportation.", "They often do not see themselves as victims.",
        "They need much more: housing, food, immigration help.",
        "Officers sometimes see them as offenders, not victims.",
        "Trauma is deeper and lasts longer.", "Language barriers and no family here.",
    ],
    "lesson_learned": [
        "You have to look beneath the surface; this work requires a lot of patience and time.",
        "It is a bigger problem than we believed, and it is happening here.",
        "The word has to get out to the community if we are ever to combat this crime.",
        "Build trust with the victim first; the case follows.", "Work with the NGOs from day one.",
        "Treat them as victims, not criminals.", "Collaboration with the federal agencies is everything.",
        "Train the patrol officers; they see it first.", "Do not assume prostitution is voluntary.",
        "Get interpreters you can trust.", "",
    ],
}

# ---------------------------------------------------------------------------
# Generation helpers.


def expand(counts):
    out = []
    for v, n in counts.items():
        out += [v] * n
    return out


def assign_scale(rng, resps, code, table, missing_for=None):
    """Gives each respondent of one position a value so the table holds.

    Missing codes go to `missing_for` (or random respondents); the values are
    matched to the respondents by a latent trait plus noise, so related items
    correlate the way they would."""
    values = expand({k: v for k, v in table.items() if k not in MISSING})
    miss = expand({k: v for k, v in table.items() if k in MISSING})
    assert len(values) + len(miss) == len(resps), (code, len(values), len(miss), len(resps))
    pool = list(resps)
    chosen = list(missing_for or [])[: len(miss)]
    rest = [r for r in pool if r not in chosen]
    rng.shuffle(rest)
    chosen += rest[: len(miss) - len(chosen)]
    for r, m in zip(chosen, miss):
        r["v"][code] = {"missing": m}
    valid = [r for r in pool if r not in chosen]
    key = LATENT.get(code)
    if key:
        valid.sort(key=lambda r: r["lat"][key] + rng.gauss(0, 0.9))
    else:
        rng.shuffle(valid)
    for r, v in zip(valid, sorted(values)):
        r["v"][code] = v


def assign_single(rng, resps, code, table):
    values = expand(table)
    assert len(values) == len(resps), (code, len(values), len(resps))
    rng.shuffle(values)
    for r, v in zip(resps, values):
        r["v"][code] = v


def assign_multi(rng, resps, code, counts, n_answer):
    """Option counts over n_answer respondents (the others leave it blank);
    everyone who answers picks at least one option."""
    assert n_answer <= len(resps), (code, n_answer, len(resps))
    assert sum(counts.values()) >= n_answer, code
    pool = list(resps)
    rng.shuffle(pool)
    answering = pool[:n_answer]
    picks = {id(r): set() for r in answering}
    for opt, n in counts.items():
        assert n <= n_answer, (code, opt)
        for r in rng.sample(answering, n):
            picks[id(r)].add(opt)
    # Everyone answering needs a pick: move one from someone with several.
    for r in answering:
        while not picks[id(r)]:
            donors = [d for d in answering if len(picks[id(d)]) >= 2]
            d = rng.choice(donors)
            opt = rng.choice(sorted(picks[id(d)]))
            picks[id(d)].discard(opt)
            picks[id(r)].add(opt)
    order = {o: i for i, o in enumerate(counts)}
    for r in answering:
        r["v"][code] = sorted(picks[id(r)], key=lambda o: order[o])


def pct(num, den):
    """share * 100 rounded half away from zero (Rust's f64::round)."""
    x = 100.0 * num / den
    return int(math.floor(x + 0.5))


# ---------------------------------------------------------------------------


def build():
    rng = random.Random(SEED)
    resps = []
    for pos, n in POSITIONS:
        for _ in range(n):
            resps.append({"form": pos, "v": {}, "lat": {k: rng.gauss(0, 1) for k in "kcur"}})
    by = {pos: [r for r in resps if r["form"] == pos] for pos, _ in POSITIONS}

    # Cases worked first: experience follows the knowledge latent.
    for pos, table in CASES.items():
        rs = sorted(by[pos], key=lambda r: r["lat"]["k"] + rng.gauss(0, 1.0))
        for r, v in zip(rs, sorted(expand(table), key=lambda c: OPTIONS["cases_worked"].index(c))):
            r["v"]["cases_worked"] = v
            r["has_cases"] = v != "none"
    with_cases = [r for r in resps if r["has_cases"]]
    assert len(with_cases) == 82
    # Years on cases and average time per case, among those with cases; more
    # cases -> more years.
    order = sorted(with_cases, key=lambda r: (OPTIONS["cases_worked"].index(r["v"]["cases_worked"]),
                                              rng.random()))
    years = expand(CASE_YEARS)
    dk = [y for y in years if y == "dk"]
    years = [y for y in years if y != "dk"]
    years.sort(key=lambda y: OPTIONS["case_experience_years"].index(y))
    # shuffle mildly: pair in order with some local noise
    noisy = sorted(range(len(order)), key=lambda i: i + rng.gauss(0, 12))
    order = [order[i] for i in noisy]
    dk_resp = order[rng.randrange(10, 60)]
    dk_resp["v"]["case_experience_years"] = {"missing": "dk"}
    rest = [r for r in order if r is not dk_resp]
    for r, y in zip(rest, years):
        r["v"]["case_experience_years"] = y
    assert len(dk) == 1
    assign_single(rng, with_cases, "case_duration", CASE_DURATION)

    # Victims worked with.
    for r in by[INV]:
        v = r["v"]
        if r["has_cases"] or rng.random() < 0.2:
            big = r["v"]["cases_worked"] in ("6_to_10", "11_to_20", "over_20")
            female = rng.randint(4, 45) if big else rng.randint(0, 14)
            male = rng.choice([0, 0, 0, 1, 2, 3, 5]) + (rng.randint(0, 8) if big else 0)
            if female + male == 0:
                female = rng.randint(1, 3)
            trans = 1 if rng.random() < 0.03 else 0
            v["victims_male"], v["victims_female"], v["victims_transgender"] = male, female, trans
        else:
            v["victims_male"] = v["victims_female"] = v["victims_transgender"] = 0
    for r in rng.sample([r for r in by[INV] if r["has_cases"]], 2):
        for c in ("victims_male", "victims_female", "victims_transgender"):
            r["v"][c] = {"missing": "dk"}
    lo_no_victims = []
    for r in by[LO]:
        if r["has_cases"]:
            r["v"]["victims_total"] = rng.randint(1, 25)
        else:
            r["v"]["victims_total"] = 0
    no_case_lo = [r for r in by[LO] if not r["has_cases"]]
    rng.shuffle(no_case_lo)
    for r in no_case_lo[:6]:
        r["v"]["victims_total"] = rng.randint(1, 4)
    lo_no_victims = no_case_lo[6:]
    assert len(lo_no_victims) == 8
    for r in by[VW]:
        r["v"]["victims_total"] = rng.randint(3, 60)

    def total(r):
        v = r["v"]
        if r["form"] == INV:
            parts = [v["victims_male"], v["victims_female"], v["victims_transgender"]]
            return sum(parts) if all(isinstance(p, int) for p in parts) else 0
        return v["victims_total"]

    for r in resps:
        t = total(r)
        if t > 0:
            juv = min(t, int(round(t * rng.choice([0, 0, 0.1, 0.2, 0.3, 0.5, 1.0]))))
            r["v"]["victims_juvenile"], r["v"]["victims_adult"] = juv, t - juv

    # Scales. Line officers without victims are the ones who cannot rate
    # victims' communication and cooperation.
    for code, tables in SCALES.items():
        for pos, table in tables.items():
            miss_for = None
            if pos == LO and code in ("communication_challenge", "victim_cooperation"):
                miss_for = lo_no_victims[: sum(n for k, n in table.items() if k in MISSING)]
            assign_scale(rng, by[pos], code, table, miss_for)
    fix_straightlining(rng, by)

    for code, tables in SINGLE.items():
        for pos, table in tables.items():
            assign_single(rng, by[pos], code, table)
    for code, tables in MULTI.items():
        for pos, (counts, n) in tables.items():
            assign_multi(rng, by[pos], code, counts, n)
    for code, (counts, n) in POOLED.items():
        assign_multi(rng, resps, code, counts, n)
    assign_multi(rng, by[INV] + by[LO], "red_flags", *RED_FLAGS)
    langs = [list(x) for x in LANGUAGES]
    rng.shuffle(langs)
    for r, l in zip(resps, langs):
        r["v"]["languages"] = l
    for code in TA:
        yes, na = TA_YES[code]
        assign_single(rng, resps, code, {"yes": yes, "na": na, "no": len(resps) - yes - na})

    # Text answers (some left blank: not required).
    for r in resps:
        v = r["v"]
        v["position_description"] = rng.choice(TEXT["position_description"][r["form"]])
        for code, p_blank in (("trafficking_definition", 0.03), ("case_differences", 0.12),
                              ("lesson_learned", 0.1), ("continued_presence_role", 0.15),
                              ("case_outcome", 0.1), ("victim_safety", 0.1), ("victim_differences", 0.1)):
            if rng.random() >= p_blank:
                t = rng.choice(TEXT[code])
                if t:
                    v[code] = t
    return rng, resps


def scale_sequence(form, answers):
    return [answers.get(i) for i, c in FORMS[form] if KINDS[c][0] == "scale"]


def longest_run(seq):
    best = run = 0
    last = None
    for x in seq:
        if isinstance(x, int) and not isinstance(x, bool):
            run = run + 1 if x == last else 1
            last = x
        else:
            run, last = 0, None
        best = max(best, run)
    return best


def fix_straightlining(rng, by, limit=5):
    """Swaps values of one scale item between two respondents of the same
    position (every table is per position, so no topline moves) until no one
    has a run of `limit` or more identical scale answers."""
    for pos, rs in by.items():
        codes = [c for _, c in FORMS[pos] if KINDS[c][0] == "scale"]
        for _ in range(1000):
            bad = [r for r in rs if longest_run([r["v"].get(c) for c in codes]) >= limit]
            if not bad:
                break
            r = bad[0]
            c = rng.choice(codes)
            mine = r["v"].get(c)
            others = [o for o in rs if o is not r and isinstance(o["v"].get(c), int)
                      and o["v"][c] != mine]
            if isinstance(mine, int) and others:
                o = rng.choice(others)
                r["v"][c], o["v"][c] = o["v"][c], mine
        else:
            raise SystemExit(f"could not remove straightlining for {pos}")


def to_submissions(rng, resps):
    rng.shuffle(resps)
    regions = expand(REGIONS)
    rng.shuffle(regions)
    interviewers = expand(INTERVIEWERS)
    rng.shuffle(interviewers)
    # Fieldwork on weekdays, 7 March to 26 August 2005, business hours (ET).
    day0 = dt.date(2005, 3, 7)
    days = [day0 + dt.timedelta(d) for d in range(0, 173) if (day0 + dt.timedelta(d)).weekday() < 5]
    starts = []
    for _ in resps:
        d = rng.choice(days)
        minute = rng.randrange(13 * 60, 21 * 60, 5)  # 09:00-17:00 EDT in UTC
        starts.append(dt.datetime(d.year, d.month, d.day, minute // 60, minute % 60, rng.randrange(60),
                                  tzinfo=dt.timezone.utc))
    starts.sort()
    subs = []
    # Submission ids are random-looking and independent of respondent ids: an
    # id derived from the respondent (LE-0001 -> LE-0001-1) would let anyone
    # who sees submission ids (flags, logs, the quality topic) recover who
    # answered. A separate generator keeps the rest of the dataset unchanged.
    id_rng = random.Random("fieldwatch-seed-submission-ids")
    for k, (r, start, region, interviewer) in enumerate(zip(resps, starts, regions, interviewers), 1):
        minutes = max(38, min(95, int(rng.gauss(60, 11))))
        end = start + dt.timedelta(minutes=minutes, seconds=rng.randrange(60))
        answers = {}
        for item_id, code in FORMS[r["form"]]:
            if code in r["v"]:
                answers[item_id] = r["v"][code]
        rid = f"LE-{k:04d}"
        subs.append({
            "study": STUDY, "form": r["form"], "respondent_id": rid, "submission_id": f"S-{id_rng.getrandbits(64):016x}",
            "started_at": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "completed_at": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "interviewer": interviewer, "attributes": {"region": region}, "answers": answers,
        })
    # Items hidden by their relevance condition are removed (legitimate skips).
    for s in subs:
        a = s["answers"]
        for item_id, cond in RELEVANT[s["form"]].items():
            if not cond(a):
                a.pop(item_id, None)
    return subs


# ---------------------------------------------------------------------------
# Findings: (text, code, by, segment, measure, value, percent).

F = []


def finding(text, item, measure, percent, value=None, segment=None):
    F.append({"finding": text, "item": item, "by": "position" if segment else None,
              "segment": segment, "measure": measure, "value": value, "percent": percent})


finding("More than half (57%) consider themselves knowledgeable to very knowledgeable about human trafficking (Key Findings 1.2, Fig. 7; exec. summary 1.1)", "knowledge", "high_box", 57)
finding("25 percent reported they were somewhat knowledgeable (Key Findings 1.2, Fig. 7)", "knowledge", "middle_box", 25)
finding("18 percent reported minimal knowledge of human trafficking (Key Findings 1.2, Fig. 7)", "knowledge", "low_box", 18)
finding("64 percent of investigators indicated they were knowledgeable to very knowledgeable (Key Findings 1.2, Fig. 7)", "knowledge", "high_box", 64, segment=INV)
finding("only 34 percent of line officers reported similar knowledge (Key Findings 1.2, Fig. 7)", "knowledge", "high_box", 34, segment=LO)
finding("71 percent of State/local investigators reported working with task forces (Key Findings 1.3)", "task_force", "share", 71, "yes", INV)
finding("Housing/shelter was the most common needed service (65%) (Key Findings 1.9, Fig. 19; exec. summary 1.8)", "services_needed", "share", 65, "housing")
finding("Needed services: medical services 39% (Key Findings 1.9, Fig. 19)", "services_needed", "share", 39, "medical")
finding("Needed services: counseling/support groups 27% (Key Findings 1.9, Fig. 19)", "services_needed", "share", 27, "counseling")
finding("Needed services: advocacy services 26% (Key Findings 1.9, Fig. 19)", "services_needed", "share", 26, "advocacy")
finding("Needed services: legal services 26% (Key Findings 1.9, Fig. 19)", "services_needed", "share", 26, "legal")
finding("Needed services: food 26% (Key Findings 1.9, Fig. 19)", "services_needed", "share", 26, "food")
finding("Needed services: social service coordination 24% (Key Findings 1.9, Fig. 19)", "services_needed", "share", 24, "service_coordination")
finding("Needed services: mental health services 23% (Key Findings 1.9, Fig. 19)", "services_needed", "share", 23, "mental_health")
finding("Needed services: clothing 18% (Key Findings 1.9, Fig. 19)", "services_needed", "share", 18, "clothing")
finding("The majority (63%) indicated it was challenging to very challenging communicating with victims (Key Findings 1.10, Fig. 21; exec. summary 1.9) - points 1-2 of the reverse-worded scale", "communication_challenge", "high_box", 63)
finding("more line officers (78%) found communication with victims to be challenging (Key Findings 1.10, Fig. 21)", "communication_challenge", "high_box", 78, segment=LO)
finding("Almost half (48%) learned about human trafficking through regular law enforcement activities (Key Findings 1.2, Fig. 6)", "first_learned", "share", 48, "law_enforcement_activities")
finding("Another 27 percent learned through training events and conferences (exec. summary 1.1; Key Findings 1.2, Fig. 6)", "first_learned", "share", 27, "training_conference")
finding("35% were not familiar to minimally familiar with the TVPA (Key Findings 1.2, Fig. 8)", "tvpa_familiarity", "low_box", 35)
finding("44% were familiar to very familiar with the TVPA (Key Findings 1.2, Fig. 8; exec. summary 1.1)", "tvpa_familiarity", "high_box", 44)
finding("Investigators on the 2003 reauthorization: 39% not familiar/minimal familiarity (Key Findings 1.2)", "tvpra_2003_familiarity", "low_box", 39, segment=INV)
finding("Investigators on the 2003 reauthorization: 32% somewhat familiar (Key Findings 1.2)", "tvpra_2003_familiarity", "middle_box", 32, segment=INV)
finding("Investigators on the 2003 reauthorization: 29% familiar/very familiar (Key Findings 1.2)", "tvpra_2003_familiarity", "high_box", 29, segment=INV)
finding("Half of the line officers were not familiar to only minimally familiar with the reauthorization (Key Findings 1.2)", "tvpra_2003_familiarity", "low_box", 50, segment=LO)
finding("the other half [of line officers] were only somewhat familiar (Key Findings 1.2)", "tvpra_2003_familiarity", "middle_box", 50, segment=LO)
finding("80 percent said there is a difference between trafficking and smuggling (Key Findings 1.2)", "trafficking_smuggling_difference", "share", 80, "yes")
finding("The majority (59%) indicated their State had a human trafficking law (Key Findings 1.3, Fig. 9)", "state_law", "share", 59, "has_law")
finding("36 percent indicated trafficking was a serious or very serious problem (Key Findings 1.3, Fig. 10; exec. summary 1.2)", "problem_seriousness", "high_box", 36)
finding("20 percent indicated human trafficking was not a priority or a minor priority (Key Findings 1.3, Fig. 11)", "agency_priority", "low_box", 20)
finding("22 percent indicated it was somewhat of a priority (Key Findings 1.3, Fig. 11)", "agency_priority", "middle_box", 22)
finding("58 percent reported a high to very high priority in their agency (Key Findings 1.3, Fig. 11)", "agency_priority", "high_box", 58)
finding("61% of State/local investigators viewed trafficking as a high to very high priority (Key Findings 1.3)", "agency_priority", "high_box", 61, segment=INV)
finding("a greater proportion of investigators than line officers (40%) viewed it as a high to very high priority (Key Findings 1.3)", "agency_priority", "high_box", 40, segment=LO)
finding("Most respondents (65%) reported having only English language capabilities (Key Findings 1.1, Fig. 4)", "languages", "share", 65, "none")
finding("22 percent reported Spanish language capabilities as well (Key Findings 1.1, Fig. 4)", "languages", "share", 22, "spanish")
finding("Most respondents (60%) reported having worked on 1 to 5 trafficking cases (Key Findings 1.1, Fig. 5)", "cases_worked", "share", 60, "1_to_5")
finding("32% have not yet worked an official case (Key Findings 1.1)", "cases_worked", "share", 32, "none")
finding("Of those who have had cases, 33 percent had less than 1 year of experience working on them (Key Findings 1.1)", "case_experience_years", "share", 33, "under_1")
finding("41 percent had 1 to 2 years of experience (Key Findings 1.1)", "case_experience_years", "share", 41, "1_to_2")
finding("19 percent had 3 to 4 years of experience (Key Findings 1.1)", "case_experience_years", "share", 19, "3_to_4")
finding("7 percent had 9 or more years of experience (Key Findings 1.1)", "case_experience_years", "share", 7, "9_or_more")
finding("One-third (33%) of respondents were in their current position for 0 to 1 year (Key Findings 1.1, Fig. 3)", "years_in_position", "share", 33, "up_to_1_year")
finding("32% learn of cases during the course of other investigations (Key Findings 1.5, Fig. 13)", "case_sources", "share", 32, "other_investigations")
finding("30% receive information about cases from citizens or Good Samaritans (Key Findings 1.5, Fig. 13)", "case_sources", "share", 30, "citizens")
finding("25% learn about cases from other law enforcement officers (Key Findings 1.5, Fig. 13)", "case_sources", "share", 25, "other_law_enforcement")
finding("line officers saw conducting covert/overt operations (70%) as their primary role (Key Findings 1.6, Fig. 14)", "primary_role", "share", 70, "covert_overt_operations", LO)
finding("line officers saw interviewing victims (50%) as their primary role (Key Findings 1.6, Fig. 14)", "primary_role", "share", 50, "interview_victims", LO)
finding("more line officers (20%) saw working with other State/local law enforcement as a primary role (Key Findings 1.6, Fig. 14)", "primary_role", "share", 20, "work_with_state_local_le", LO)
finding("no line officers saw working with Federal law enforcement as their primary role (Key Findings 1.6, Fig. 14)", "primary_role", "share", 0, "work_with_federal_le", LO)
finding("40 percent were not at all familiar to only minimally familiar with continued presence (Key Findings 1.6, Fig. 15)", "continued_presence_familiarity", "low_box", 40)
finding("79% indicated protocols were useful to very useful (Key Findings 1.7)", "protocol_usefulness", "high_box", 79)
finding("another 14 percent indicated the protocols were somewhat useful (Key Findings 1.7)", "protocol_usefulness", "middle_box", 14)
finding("44% could not give an average time per case because it varies (Key Findings 1.7, Fig. 17; exec. summary 1.6)", "case_duration", "share", 44, "varies")
finding("19 percent did not have protocols in place for working with victim service providers (Key Findings 1.9)", "vsp_protocols", "share", 19, "not_in_place")
finding("Only 8 percent were unaware of whether such protocols existed (Key Findings 1.9)", "vsp_protocols", "share", 8, "unaware")
finding("The majority (73%) were confident to very confident in their ability to refer victims (Key Findings 1.9, Fig. 20)", "referral_confidence", "high_box", 73)
finding("82 percent of investigators were confident to very confident to refer (Key Findings 1.9, Fig. 20)", "referral_confidence", "high_box", 82, segment=INV)
finding("only 45 percent of line officers reported the same level of confidence (Key Findings 1.9, Fig. 20)", "referral_confidence", "high_box", 45, segment=LO)
finding("almost half (48%) reported victims as not cooperative or only minimally cooperative (Key Findings 1.10, Fig. 22)", "victim_cooperation", "low_box", 48)
finding("not/minimally cooperative victims: higher for line officers (71%) (Key Findings 1.10, Fig. 22)", "victim_cooperation", "low_box", 71, segment=LO)
finding("not/minimally cooperative victims: 46% for investigators (Key Findings 1.10, Fig. 22)", "victim_cooperation", "low_box", 46, segment=INV)
finding("Reasons for victim apprehension: fear of deportation (66%) (Key Findings 1.10, Fig. 23)", "apprehension_reasons", "share", 66, "fear_of_deportation")
finding("Reasons for victim apprehension: lack of trust in the U.S. criminal justice system (48%) (Key Findings 1.10, Fig. 23)", "apprehension_reasons", "share", 48, "distrust_justice_system")
finding("Reasons for victim apprehension: fear of retaliation against self or family (46%) (Key Findings 1.10, Fig. 23)", "apprehension_reasons", "share", 46, "fear_of_retaliation")
finding("45 percent received training mostly from Federal law enforcement-sponsored events (Key Findings 1.11, p. 40)", "training_sources", "share", 45, "federal_le_events")
finding("training source: on the job training (25%) (Key Findings 1.11, p. 40)", "training_sources", "share", 25, "on_the_job")
finding("training source: victim service providers (11%) (Key Findings 1.11, p. 40)", "training_sources", "share", 11, "vsp_training")
finding("training source: State and local law enforcement-sponsored events (11%) (Key Findings 1.11, p. 40)", "training_sources", "share", 11, "state_local_le_events")
finding("Only 5 percent indicated receiving training through task forces (Key Findings 1.11, p. 40)", "training_sources", "share", 5, "task_force")
finding("Training needed on methods for identifying cases (76%) (Key Findings 1.11, Fig. 24, p. 40; grid item d)", "ta_identifying_methods", "share", 76, "yes")
finding("Training needed on methods for responding to cases (74%) (Key Findings 1.11, Fig. 24, p. 40; grid item e, methods for investigating)", "ta_investigating_methods", "share", 74, "yes")
finding("Training needed on understanding the TVPA and other laws (74%) (Key Findings 1.11, Fig. 24, p. 40; grid item b)", "ta_tvpa_laws", "share", 74, "yes")
finding("Training needed on methods for interviewing victims (74%) (Key Findings 1.11, Fig. 24, p. 40; grid item k)", "ta_interviewing_methods", "share", 74, "yes")

# Published numbers that hold in the data but are sums of two options (not
# expressible as one share): checked here, not written to the findings file.
COMPOSITE = [
    ("71% have a formal protocol or are developing one (Fig. 16)", "identification_protocols", ["in_place", "in_development"], 71),
    ("73% have protocols with VSPs or are developing them (Key Findings 1.9)", "vsp_protocols", ["in_place", "in_development"], 73),
    ("20% did not distinguish trafficking from smuggling (Key Findings 1.2)", "trafficking_smuggling_difference", ["no"], 20),
]

# ---------------------------------------------------------------------------
# Verification, from the written file.


def is_valid(x):
    return x is not None and not (isinstance(x, dict) and "missing" in x) and x != []


def box_of(code, v, b=2, lo=1, hi=5):
    desc = KINDS[code][1] == "desc"
    if v <= lo + b - 1:
        return "high" if desc else "low"
    if v >= hi - b + 1:
        return "low" if desc else "high"
    return "middle"


def verify(path):
    problems = []
    subs = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]
    if len(subs) != 121:
        problems.append(f"{len(subs)} interviews, want 121")
    forms = {}
    for s in subs:
        forms[s["form"]] = forms.get(s["form"], 0) + 1
    if forms != {INV: 84, LO: 30, VW: 7}:
        problems.append(f"forms {forms}")
    if len({s["respondent_id"] for s in subs}) != len(subs):
        problems.append("duplicate respondent ids")
    if len({s["submission_id"] for s in subs}) != len(subs):
        problems.append("duplicate submission ids")
    fps = {}
    for s in subs:
        fp = json.dumps(s["answers"], sort_keys=True)
        if fp in fps:
            problems.append(f"{s['respondent_id']} has the same answers as {fps[fp]}")
        fps[fp] = s["respondent_id"]
    regions = {}
    for s in subs:
        regions[s["attributes"]["region"]] = regions.get(s["attributes"]["region"], 0) + 1
    if pct(regions["southeast"], 121) != 25 or pct(regions["southwest"], 121) != 20:
        problems.append(f"regions {regions}")

    # Per-record cleanliness.
    for s in subs:
        rid, form, a = s["respondent_id"], s["form"], s["answers"]
        t0 = dt.datetime.strptime(s["started_at"], "%Y-%m-%dT%H:%M:%SZ")
        t1 = dt.datetime.strptime(s["completed_at"], "%Y-%m-%dT%H:%M:%SZ")
        if not t1 > t0 + dt.timedelta(minutes=30):
            problems.append(f"{rid}: implausible duration")
        ids = dict(FORMS[form])
        for item_id, x in a.items():
            if item_id not in ids:
                problems.append(f"{rid}: {item_id} not on form {form}")
                continue
            if x is None or (isinstance(x, dict) and x.get("missing") in MISSING):
                continue
            kind, param = KINDS[ids[item_id]]
            ok = {
                "scale": lambda: isinstance(x, int) and 1 <= x <= 5,
                "count": lambda: isinstance(x, int) and 0 <= x <= param,
                "yes_no": lambda: x in ("yes", "no"),
                "yes_no_na": lambda: x in ("yes", "no", "na"),
                "single_choice": lambda: x in OPTIONS[param],
                "multi_select": lambda: isinstance(x, list) and x and len(set(x)) == len(x)
                and all(o in OPTIONS[param] for o in x),
                "text": lambda: isinstance(x, str) and x,
            }[kind]()
            if not ok:
                problems.append(f"{rid}: {item_id} = {x!r} is not a valid {kind}")
        for item_id, code in FORMS[form]:
            cond = RELEVANT[form].get(item_id)
            relevant = cond(a) if cond else True
            present = a.get(item_id) is not None
            if not relevant and present:
                problems.append(f"{rid}: {item_id} answered although hidden")
            if relevant and code in REQUIRED and not present:
                problems.append(f"{rid}: required {item_id} blank")
        if longest_run(scale_sequence(form, a)) >= 8:
            problems.append(f"{rid}: straightlining")
        # consistency: juveniles + adults = victims
        if form == INV:
            parts = [a.get("q13_male"), a.get("q13_female"), a.get("q13_transgender")]
            if all(isinstance(p, int) for p in parts) and sum(parts) > 0:
                if a["q14_juvenile"] + a["q14_adult"] != sum(parts):
                    problems.append(f"{rid}: victims by age do not add up")

    # Values by canonical code, per interview.
    def values(code, segment=None):
        out = []
        for s in subs:
            if segment and s["form"] != segment:
                continue
            for item_id, c in FORMS[s["form"]]:
                if c == code and is_valid(s["answers"].get(item_id)):
                    out.append(s["answers"][item_id])
        return out

    def measure(f):
        vs = values(f["item"], f["segment"])
        if not vs:
            return None, 0, 0
        if f["measure"] == "share":
            hit = sum(1 for v in vs if (f["value"] in v if isinstance(v, list) else v == f["value"]))
        else:
            want = f["measure"].split("_")[0]
            hit = sum(1 for v in vs if box_of(f["item"], v) == want)
        return pct(hit, len(vs)), hit, len(vs)

    for f in F:
        got, hit, n = measure(f)
        x = 100.0 * hit / n if n else 0
        if got != f["percent"]:
            problems.append(f"finding not reproduced: {f['finding']}: {hit}/{n} = {x:.1f}%, want {f['percent']}%")
        elif n and abs(x - math.floor(x) - 0.5) < 0.01:
            problems.append(f"finding sits on a rounding edge: {f['finding']}: {hit}/{n}")
        elif n < 5:
            problems.append(f"finding cell below min_cell_size: {f['finding']}")
        f["_check"] = f"{hit}/{n}"
    for text, code, opts, want in COMPOSITE:
        vs = values(code)
        hit = sum(1 for v in vs if v in opts)
        if pct(hit, len(vs)) != want:
            problems.append(f"composite not reproduced: {text}: {hit}/{len(vs)}")
    return problems


def main():
    rng, resps = build()
    subs = to_submissions(rng, resps)
    with open(OUT_JSONL, "w", encoding="utf-8") as out:
        for s in subs:
            out.write(json.dumps(s, separators=(",", ":"), ensure_ascii=False) + "\n")
    problems = verify(OUT_JSONL)
    with open(OUT_FINDINGS, "w", encoding="utf-8") as out:
        json.dump([{k: v for k, v in f.items() if not k.startswith("_")} for f in F], out, indent=1,
                  ensure_ascii=False)
        out.write("\n")
    if "-v" in sys.argv:
        for f in F:
            print(f"{f['percent']:>3}%  {f['_check']:>7}  {f['item']}/{f['measure']}/{f['value']} {f['segment'] or ''}")
    if problems:
        for p in problems:
            print("FAIL:", p, file=sys.stderr)
        sys.exit(1)
    print(f"wrote {len(subs)} interviews to {os.path.relpath(OUT_JSONL)} and {len(F)} findings "
          f"to {os.path.relpath(OUT_FINDINGS)}; all findings reproduced")


if __name__ == "__main__":
    main()
