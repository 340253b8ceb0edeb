{{ config(severity='warn') }}

-- The latest build judged streaming verdicts differently from the streaming
-- path, on the same data at the same instant (fct_audience_streaming_disagreements;
-- the rule is in docs/audiences.md). A warning, not an error: the build's own
-- evaluation has already settled the membership; the rows say which audience
-- and profile to investigate.
with

disagreements as (

    select * from {{ ref('fct_audience_streaming_disagreements') }}

),

evaluations as (

    select * from {{ ref('fct_audience_evaluations') }}

),

latest_build as (

    select max(evaluations.evaluated_at) as evaluated_at
    from evaluations
    where evaluations.evaluation_kind = 'build'

)

select
    disagreements.audience_id,
    disagreements.profile_id,
    disagreements.streaming_said,
    disagreements.build_found,
    disagreements.streaming_evaluated_at
from disagreements
inner join latest_build
    on latest_build.evaluated_at = disagreements.build_evaluated_at
