from django.urls import path

from labeling.review import team_views, views

urlpatterns = [
    path("review/", views.review_queue, name="queue"),
    path("review/<int:task_id>/decide/", views.review_submit, name="review_submit"),
    path("review/<int:task_id>/skip/", views.review_skip, name="review_skip"),
    path("review/skipped/", views.review_unskip, name="review_unskip"),
    path("review/undo/", views.review_undo, name="review_undo"),
    path("review/decisions/", views.decision_list, name="decision_list"),
    path("review/decisions/<int:decision_id>/", views.decision_edit, name="decision_edit"),
    path("review/<int:task_id>/full/", views.review_full, name="review_full"),
    path("jobs/<int:job_id>/review-notes/", views.review_notes_view, name="review_notes"),
    path("review/adjudicate/", team_views.adjudication_queue, name="adjudication_queue"),
    path("review/adjudicate/<int:task_id>/", team_views.adjudicate_task, name="adjudicate_task"),
    path("jobs/<int:job_id>/review-team/", team_views.job_review_team, name="job_review_team"),
    path("jobs/<int:job_id>/assign/", team_views.job_assign, name="job_assign"),
    path(
        "policies/<int:policy_id>/review-team/",
        team_views.policy_review_team,
        name="policy_review_team",
    ),
]
